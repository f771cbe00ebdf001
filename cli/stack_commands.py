"""``fleetstream stack up|down|status|logs``: the local stack of real services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from cli.console import say
from cli.progress import activity
from cli.stack import manager
from cli.stack.certs import Pki
from schemas.settings import get_settings

stack_app = typer.Typer(no_args_is_help=True, help="Local Kafka, Postgres, Redis, Mosquitto.")
certs_app = typer.Typer(no_args_is_help=True, help="The secure mode's local CA and certificates.")
stack_app.add_typer(certs_app, name="certs")
credentials_app = typer.Typer(no_args_is_help=True, help="The secure mode's Kafka passwords.")
stack_app.add_typer(credentials_app, name="credentials")

ServicesArg = Annotated[
    list[str] | None, typer.Argument(help="kafka, postgres, redis, mosquitto (default: all)")
]


@contextmanager
def _clear_errors() -> Iterator[None]:
    """A StackError is a message for the operator, not a traceback."""
    try:
        yield
    except manager.StackError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@stack_app.command()
def up(services: ServicesArg = None) -> None:
    """Start (or keep) the services and wait until each answers."""
    with _clear_errors(), activity("stack up") as shown:
        manager.up(get_settings(), services=services, progress=say)
        say(f"stack is up ({shown.elapsed_s:.1f} s)")


@stack_app.command()
def down(services: ServicesArg = None) -> None:
    """Stop the services this stack started (by their pids); data is kept."""
    with _clear_errors(), activity("stack down"):
        manager.down(get_settings(), services=services, progress=say)


@stack_app.command()
def status() -> None:
    """One line per service: running pid, address, healthy. Exit 1 unless all are healthy."""
    unhealthy = False
    for svc in manager.status(get_settings()):
        state = "healthy" if svc.healthy else ("running" if svc.pid else "stopped")
        unhealthy |= not svc.healthy
        typer.echo(f"{svc.name:<10} {state:<8} pid={svc.pid or '-':<8} {svc.address}")
    raise typer.Exit(1 if unhealthy else 0)


@stack_app.command()
def logs(
    service: str,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
) -> None:
    """The last lines of a service's log."""
    with _clear_errors():
        typer.echo(manager.tail(get_settings(), service, lines))


@certs_app.command()
def rotate(
    new_ca: Annotated[
        bool, typer.Option("--ca", help="also a new CA (every client must get the new ca.pem)")
    ] = False,
) -> None:
    """New server certificates (same CA unless --ca); a restart serves the new one."""
    with _clear_errors():
        home = get_settings().stack.home
        issued = Pki.of_home(home).rotate(say, new_ca=new_ca)
    typer.echo(f"new certificates for {', '.join(issued)} under {Pki.of_home(home).root}")


@credentials_app.command("rotate")
def rotate_credentials(
    principal: Annotated[
        list[str] | None,
        typer.Option(help="a principal to rotate, repeatable (default: all but admin)"),
    ] = None,
) -> None:
    """New SCRAM passwords on the running broker and in pki/kafka-users.json; restart the
    processes that use them (open connections stay up, new ones need the new password)."""
    from cli.stack import scram

    with _clear_errors():
        rotated = scram.rotate(get_settings(), principal or scram.DEFAULT, say)
    typer.echo(f"new passwords for {', '.join(rotated)}")

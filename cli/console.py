"""What every ``fleetstream`` command prints to the operator: progress, and errors as one line.

The lowest module of the CLI: the commands and :mod:`cli.runner` import it, it imports none of
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NoReturn

import typer

from schemas.errors import FleetError

CONFIRM_SHOWN = 20
"""Items a confirmation lists by name before it says how many more."""

sayer: ContextVar[Callable[[str], None] | None] = ContextVar("sayer", default=None)
"""Where :func:`say` prints while a progress line is drawn (:mod:`cli.progress` sets it), so
messages print above the line instead of through it."""


def say(message: str) -> None:
    """Progress, on stderr."""
    target = sayer.get()
    if target is not None:
        target(message)
        return
    typer.secho(f"fleetstream: {message}", fg=typer.colors.CYAN, err=True)


def confirm(action: str, touched: Sequence[str], *, yes: bool) -> None:
    """Before a destructive ``action``: list what it will touch (on stderr), then ask, unless
    ``yes``. A no, or no answer (stdin closed, as in a script), exits 1 with nothing done."""
    typer.secho(
        f"fleetstream: {action} will touch {len(touched)}:", fg=typer.colors.YELLOW, err=True
    )
    for item in touched[:CONFIRM_SHOWN]:
        typer.echo(f"  {item}", err=True)
    if len(touched) > CONFIRM_SHOWN:
        typer.echo(f"  ... and {len(touched) - CONFIRM_SHOWN} more", err=True)
    if yes:
        return
    typer.confirm(f"{action}?", abort=True, err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error (stderr, red) and exit with ``code``."""
    typer.secho(f"fleetstream: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def operator_errors() -> Iterator[None]:
    """Errors an operator can act on (a service down, a topic mismatch) print as one clear
    message and exit 1; anything else keeps its traceback."""
    from cli.stack.errors import StackError

    try:
        yield
    except (StackError, FleetError) as exc:
        typer.secho(f"fleetstream: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc

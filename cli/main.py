"""``fleetstream``: the one command in front of everything.

fleetstream run            stack up + migrations + topics, then API and worker (Ctrl-C stops)
fleetstream setup          stack up + migrations + topics, then exit (used by make test)
fleetstream stack up|down|status|logs
fleetstream api | worker | mqtt   one service in the foreground
fleetstream db upgrade|downgrade|current|partitions
fleetstream topics create|list|describe
fleetstream tail TOPIC      decoded records (Avro through the registry, JSON), a range or following
fleetstream lag             consumer groups: committed vs end offset per partition
fleetstream devices create|list|show|disable|enable|rotate|delete|resync|import
fleetstream flows create|update|list|show|enable|disable|delete|load-examples|resync
fleetstream flows apply|validate|dry-run   flows as files kept in git
fleetstream alerts list|ack
fleetstream deadletters list|replay
fleetstream --version, --install-completion, --show-completion
fleetstream simulate        a simulated device fleet over HTTP and MQTT, checked in Postgres
fleetstream docs config [--write]   docs/configuration.md from the settings object
fleetstream schemas generate [--check]   the readings Avro schema's sensors from the catalogue
fleetstream retention apply [--dry-run] [--yes]   remove stored data past its retention
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import runner, secure_mode
from cli.alerts_commands import alerts_app
from cli.bench_commands import bench_app
from cli.config_docs import docs_app
from cli.console import confirm, say
from cli.contracts_commands import register as register_contracts_commands
from cli.deadletters_commands import deadletters_app
from cli.devices_commands import devices_app
from cli.flows_commands import flows_app
from cli.lag_command import lag
from cli.mqtt_command import mqtt, mqtt_front
from cli.partitions_command import partitions
from cli.progress import activity
from cli.simulator.command import simulate
from cli.stack_commands import stack_app
from cli.tail_command import tail
from cli.topics_commands import topics_app
from schemas.settings import get_settings

app = typer.Typer(
    no_args_is_help=True,
    help="Kafka-first ingest and stream processing for device fleets.",
)


def _show_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version  # here: keeps every other command's start fast

        typer.echo(f"fleetstream {version('fleetstream')}")
        raise typer.Exit


@app.callback()
def main(
    ctx: typer.Context,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Kafka-first ingest and stream processing for device fleets."""
    secure_mode.for_command(ctx.invoked_subcommand)  # FLEET_STACK__SECURE: admin commands as admin


app.add_typer(stack_app, name="stack")
app.add_typer(bench_app, name="bench")
app.add_typer(devices_app, name="devices")
app.add_typer(flows_app, name="flows")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(alerts_app, name="alerts")
app.add_typer(topics_app, name="topics")
app.add_typer(docs_app, name="docs")
register_contracts_commands(app)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations (Alembic).")
app.add_typer(db_app, name="db")
db_app.command("partitions")(partitions)
app.command("mqtt")(mqtt)
app.command("mqtt-front")(mqtt_front)
app.command("simulate")(simulate)
app.command("tail")(tail)
app.command("lag")(lag)


@app.command()
def run() -> None:
    """Set everything up, then run the API and the worker until Ctrl-C."""
    plain = get_settings()
    with runner.operator_errors(), activity("setting up"):
        settings = secure_mode.as_admin(plain)  # FLEET_STACK__SECURE: the CLI is the super user
        runner.prepare(settings)
    raise typer.Exit(runner.run_services(plain))


@app.command()
def setup() -> None:
    """Start the local stack, apply migrations and create topics, then exit."""
    with runner.operator_errors(), activity("setting up") as shown:
        runner.prepare(secure_mode.as_admin(get_settings()))
        say(f"set up in {shown.elapsed_s:.1f} s")


@app.command()
def api() -> None:
    """Run the HTTP API in the foreground (FLEET_API__PROCESSES processes)."""
    from cli.api_command import serve_api

    with runner.operator_errors():
        serve_api(get_settings())


@app.command()
def worker() -> None:
    """Run a Faust worker (all agents) in the foreground; start more to scale out."""
    settings = get_settings()
    with runner.operator_errors():
        runner.create_topics(settings)
    runner.run_worker(settings)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION."""
    from connectors.postgres import migrate

    migrate.upgrade(get_settings().postgres, revision)


@db_app.command("downgrade")
def db_downgrade(
    revision: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Revert migrations down to REVISION (e.g. base): drops what the later ones created."""
    from connectors.postgres import migrate

    postgres = get_settings().postgres
    where = f"database {postgres.database} on {postgres.host}:{postgres.port}"
    confirm(
        f"revert migrations down to {revision}",
        [f"{where}: the tables, columns and rows of every migration after {revision}"],
        yes=yes,
    )
    migrate.downgrade(postgres, revision)


@db_app.command("current")
def db_current() -> None:
    """Show the applied revision."""
    from connectors.postgres import migrate

    migrate.current(get_settings().postgres)


if __name__ == "__main__":
    app()

"""Data contract commands: the generated readings schema, and retention of stored data.

``fleetstream schemas generate``: the readings Avro schema's ``sensors`` part from the catalogue.

Adding a sensor type is one entry in ``schemas/catalogue.py``, then this command, which
rewrites ``schemas/avro/readings.avsc`` (``--check`` only says whether it would). A changed
schema is a new contract version: copy the file to ``schemas/avro/history/readings.v<N+1>.avsc``
(the unit tests ask for it and check it reads every older version).

``fleetstream retention apply``: what the maintenance timer does every interval, now: drop the
readings partitions and delete the rollups, alerts and media (with their blobs) past their
retention (docs/retention.md). ``--dry-run`` counts and changes nothing; without ``--yes`` it
asks before removing anything.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

from cli.console import operator_errors
from schemas.avro_codec import SCHEMA_DIR
from schemas.avro_sensors import readings_schema_text
from schemas.clock import Clock, utc_now
from schemas.settings import PROJECT_ROOT, Settings, get_settings

READINGS_SCHEMA = SCHEMA_DIR / "readings.avsc"

schemas_app = typer.Typer(no_args_is_help=True, help="Avro contracts derived from the code.")
retention_app = typer.Typer(no_args_is_help=True, help="Remove stored data past its retention.")


def register(app: typer.Typer) -> None:
    """Add this module's command groups to the ``fleetstream`` app."""
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(retention_app, name="retention")


@schemas_app.command("generate")
def generate(
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 if the file differs, write nothing")
    ] = False,
) -> None:
    """Write schemas/avro/readings.avsc with its sensors part derived from the catalogue."""
    shown = READINGS_SCHEMA.relative_to(PROJECT_ROOT)
    text = readings_schema_text(READINGS_SCHEMA)
    if text == READINGS_SCHEMA.read_text("utf-8"):
        typer.echo(f"{shown} is what the catalogue gives", err=True)
        return
    if check:
        typer.echo(f"{shown} differs from the catalogue: run `fleetstream schemas generate`")
        raise typer.Exit(1)
    changed = json.loads(text) != json.loads(READINGS_SCHEMA.read_text("utf-8"))
    READINGS_SCHEMA.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {shown}", err=True)
    if changed:
        typer.echo("the contract changed: publish it as the next schemas/avro/history/ version")


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would go, change nothing")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask before removing")] = False,
    now: Annotated[
        datetime | None,
        typer.Option(
            "--now",
            formats=["%Y-%m-%dT%H:%M:%S%z"],
            help="the moment ages count from (default: the clock), e.g. 2027-06-15T12:00:00+00:00",
        ),
    ] = None,
) -> None:
    """Drop old readings partitions; delete old rollups, cleared alerts, media rows and blobs."""
    settings = get_settings()
    clock: Clock = utc_now if now is None else (lambda: now)
    with operator_errors():
        planned = asyncio.run(_retention(settings, clock, dry_run=True))
    for line in planned:
        typer.echo(line)
    if dry_run:
        return
    if not yes:
        typer.confirm("remove all of this?", abort=True)
    with operator_errors():
        done = asyncio.run(_retention(settings, clock, dry_run=False))
    typer.echo("removed: " + "; ".join(done))


async def _retention(settings: Settings, clock: Clock, *, dry_run: bool) -> list[str]:
    from connectors.blob.factory import blob_store
    from connectors.postgres import retention
    from connectors.postgres.pool import create_pool

    cuts = retention.cutoffs(settings.postgres, clock())
    pool = await create_pool(settings.postgres, min_size=0, max_size=1)
    try:
        if dry_run:
            return (await retention.plan(pool, cuts)).lines()
        blobs = blob_store(settings.blob)
        await blobs.open()
        try:
            return (await retention.apply(pool, blobs, cuts)).lines()
        finally:
            await blobs.close()
    finally:
        await pool.close()

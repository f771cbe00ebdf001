"""``fleetstream db partitions``: create day partitions of ``readings``.

Without options it does what the worker's maintenance timer does (yesterday to
``FLEET_POSTGRES__PARTITIONS_AHEAD_DAYS`` ahead); ``--from``/``--to`` make the partitions of
other days, e.g. for late data waiting in ``readings_default`` (its rows move into the new
partitions). At most 400 days per call.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated

import typer

from schemas.settings import PostgresSettings, get_settings


def partitions(
    first: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="first day (UTC)")
    ] = None,
    last: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="last day (UTC)")
    ] = None,
) -> None:
    """Create the missing day partitions of readings (moving their rows out of the DEFAULT
    partition)."""
    from connectors.postgres.readings import MAX_PARTITION_DAYS, partition_window

    settings = get_settings()
    default_first, default_last = partition_window(
        datetime.now(UTC).date(), settings.postgres.partitions_ahead_days
    )
    start = first.date() if first is not None else default_first
    end = last.date() if last is not None else default_last
    if end < start:
        raise typer.BadParameter("--to is before --from")
    if (end - start).days + 1 > MAX_PARTITION_DAYS:
        raise typer.BadParameter(f"at most {MAX_PARTITION_DAYS} days at once")
    created = asyncio.run(_create(settings.postgres, start, end))
    if created:
        typer.echo(f"created {len(created)} partitions: {', '.join(map(str, created))}")
    else:
        typer.echo(f"every day from {start} to {end} already has its partition")


async def _create(postgres: PostgresSettings, start: date, end: date) -> list[date]:
    from connectors.postgres.pool import create_pool
    from connectors.postgres.readings import ensure_day_partitions

    pool = await create_pool(postgres, min_size=0, max_size=1)
    try:
        return await ensure_day_partitions(pool, start, end)
    finally:
        await pool.close()

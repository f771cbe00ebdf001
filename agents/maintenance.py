"""Maintenance timer: keeps the day partitions of ``readings`` ready ahead of the data.

The sink never creates partitions (a request with readings spread over a thousand days must not
make the database create a thousand tables); rows of a day without a partition land in
``readings_default``. This timer, on the leader worker, creates yesterday's to
``FLEET_POSTGRES__PARTITIONS_AHEAD_DAYS`` days ahead's partitions every
``FLEET_WORKER__MAINTENANCE_INTERVAL_S`` (and once when the worker starts), so the sink's rows
land in their day partitions. Partitions of other days (late data) are made by an operator with
``fleetstream db partitions --from ... --to ...``, which moves their rows out of the DEFAULT
partition.

A failure (Postgres down) is logged and tried again at the next tick: it never stops the worker,
and the only cost of a late partition is rows waiting in the DEFAULT partition.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import asyncpg

from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ensure_day_partitions, partition_window
from schemas.settings import Settings
from streams.context import WorkerContext

log = logging.getLogger(__name__)


class PartitionKeeper:
    """Creates the coming day partitions; opens its pool on first use, keeps it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    async def run(self, today: date | None = None) -> list[date]:
        """One pass; returns the days created ([] when there was nothing to do or it failed)."""
        day = today or datetime.now(UTC).date()
        first, last = partition_window(day, self._settings.postgres.partitions_ahead_days)
        try:
            pool = await self._open()
            created = await ensure_day_partitions(pool, first, last)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not create the readings partitions %s..%s: %s", first, last, exc)
            return []
        if created:
            log.info("created readings partitions for %s", ", ".join(map(str, created)))
        return created

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _open(self) -> asyncpg.Pool:
        if self._pool is None:
            pg = self._settings.postgres
            self._pool = await create_pool(pg.dsn(), min_size=0, max_size=1)
        return self._pool


def register(ctx: WorkerContext) -> None:
    keeper = PartitionKeeper(ctx.settings)
    interval = ctx.settings.worker.maintenance_interval_s

    async def partitions_at_start() -> None:
        await keeper.run()

    async def partitions_on_timer() -> None:
        await keeper.run()

    ctx.app.task(partitions_at_start)
    ctx.app.timer(interval, on_leader=True, name="maintenance-partitions")(partitions_on_timer)

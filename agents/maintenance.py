"""Maintenance timer: day partitions of ``readings`` ready ahead of the data, old data removed.

The sink never creates partitions (a request with readings spread over a thousand days must not
make the database create a thousand tables); rows of a day without a partition land in
``readings_default``. This timer, on the leader worker, creates yesterday's to
``FLEET_POSTGRES__PARTITIONS_AHEAD_DAYS`` days ahead's partitions every
``FLEET_WORKER__MAINTENANCE_INTERVAL_S`` (and once when the worker starts), so the sink's rows
land in their day partitions. Partitions of other days (late data) are made by an operator with
``fleetstream db partitions --from ... --to ...``, which moves their rows out of the DEFAULT
partition.

The same timer applies retention (``connectors.postgres.retention``, docs/retention.md): old
day partitions dropped, old rollups, cleared alerts and media rows deleted, media blobs with
their rows; "now" is the worker's clock.

A failure (Postgres or the blob store down) is logged and tried again at the next tick: it never
stops the worker; the cost of a late partition is rows waiting in the DEFAULT partition, that of
a late retention pass data kept one interval longer.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import asyncpg

from connectors.blob.factory import blob_store
from connectors.postgres import retention
from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ensure_day_partitions, partition_window
from schemas.clock import Clock
from schemas.errors import FleetError
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
            self._pool = await create_pool(pg, min_size=0, max_size=1)
        return self._pool


class RetentionKeeper:
    """Applies retention once per call; opens its pool and blob store per pass (hourly)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock

    async def run(self) -> retention.RetentionReport | None:
        """One pass; None when it failed (logged; the next tick tries again)."""
        cuts = retention.cutoffs(self._settings.postgres, self._clock())
        if cuts == retention.Cutoffs(None, None, None, None):
            return retention.RetentionReport()
        blobs = blob_store(self._settings.blob)
        try:
            pool = await create_pool(self._settings.postgres, min_size=0, max_size=1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("retention pass skipped, Postgres is away: %s", exc)
            return None
        try:
            await blobs.open()
            report = await retention.apply(pool, blobs, cuts)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, FleetError) as exc:
            log.warning("retention pass stopped (the next tick goes on): %s", exc)
            return None
        finally:
            await blobs.close()
            await pool.close()
        log.info("retention: %s", "; ".join(report.lines()))
        return report


def register(ctx: WorkerContext) -> None:
    keeper = PartitionKeeper(ctx.settings)
    retention_keeper = RetentionKeeper(ctx.settings, ctx.clock)
    interval = ctx.settings.worker.maintenance_interval_s

    async def partitions_at_start() -> None:
        await keeper.run()

    async def partitions_on_timer() -> None:
        await keeper.run()
        await retention_keeper.run()

    ctx.app.task(partitions_at_start)
    ctx.app.timer(interval, on_leader=True, name="maintenance-partitions")(partitions_on_timer)

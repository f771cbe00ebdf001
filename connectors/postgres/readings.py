"""Batched, idempotent writes of readings into the day-partitioned ``readings`` table.

Rows go to the day partition of their ``ts`` when it exists, else to ``readings_default``: the
writer never creates partitions (a request must not be able to make the database create
thousands of tables). Day partitions are made ahead by the worker's maintenance timer and by
``fleetstream db partitions`` (:func:`ensure_day_partitions`).

Contract: when :meth:`ReadingStore.write` returns, every row of the batch is committed (or was
already there: rows are keyed by (event_id, ts) and conflicts are dropped), so the caller may
commit the Kafka offsets of the batch. On error nothing of the batch is committed.

Fast path: one COPY straight into ``readings``. A batch that holds a row already stored (a
redelivery after a crash, a retried request) makes that COPY fail with a unique violation; the
batch then goes in through a temporary staging table and one ``INSERT .. SELECT .. ON CONFLICT
DO NOTHING``, which drops the repeats. Repeats are rare, and the staging path costs Postgres about
twice the work per row (two writes and a merge), so it is kept for when it is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple

import asyncpg

COLUMNS = (
    "event_id",
    "device_id",
    "ts",
    "received_at",
    "source",
    "sensor_types",
    "sensors",
    "metadata",
)


class ReadingRow(NamedTuple):
    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    source: str
    sensor_types: list[str]
    sensors: str
    """The sensors object as JSON text."""
    metadata: str | None
    """Free-form tags as JSON text, or None."""


MAX_PARTITION_DAYS = 400
"""Most day partitions one call may create (a typo in a CLI date must not make thousands)."""

_STAGE = "readings_stage"
_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
    "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_COLUMN_LIST = ", ".join(COLUMNS)
# Built from module constants only; no input reaches this SQL.
_MERGE = (
    f"INSERT INTO readings ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_STAGE} "  # noqa: S608
    "ON CONFLICT DO NOTHING"
)


class ReadingStore:
    """Writes batches of readings; safe to share between tasks (each write takes a connection)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(self, rows: Sequence[ReadingRow]) -> int:
        """Write ``rows`` in one transaction; return how many were new."""
        if not rows:
            return 0
        async with self._pool.acquire() as conn:
            try:
                # In an explicit transaction: the rows are committed only by a COMMIT this
                # client sends after the COPY finished. A bare COPY commits on its own, even
                # when the worker died while the COPY waited on a lock.
                async with conn.transaction():
                    await conn.copy_records_to_table("readings", records=rows, columns=COLUMNS)
            except asyncpg.UniqueViolationError:
                return await self._merge(conn, rows)
        return len(rows)

    @staticmethod
    async def _merge(conn: asyncpg.Connection, rows: Sequence[ReadingRow]) -> int:
        """The idempotent path: stage the batch, insert what is not stored yet."""
        async with conn.transaction():
            await conn.execute(_CREATE_STAGE)
            await conn.copy_records_to_table(_STAGE, records=rows, columns=COLUMNS)
            status = await conn.execute(_MERGE)
        return _inserted_count(status)

    async def close(self) -> None:
        await self._pool.close()


async def ensure_day_partitions(pool: asyncpg.Pool, first: date, last: date) -> list[date]:
    """Create the missing day partitions of ``readings`` from ``first`` to ``last`` (inclusive;
    at most :data:`MAX_PARTITION_DAYS`); return the days that were created. Rows of such a day
    already in the DEFAULT partition move into the new one. Each day is its own transaction, so
    the exclusive lock on ``readings`` is held only for one table's creation."""
    if last < first:
        return []
    days = (last - first).days + 1
    if days > MAX_PARTITION_DAYS:
        raise ValueError(f"{days} days asked for; at most {MAX_PARTITION_DAYS} at once")
    created: list[date] = []
    async with pool.acquire() as conn:
        for offset in range(days):
            day = first + timedelta(days=offset)
            if await conn.fetchval("SELECT fleet_ensure_readings_partition($1)", day):
                created.append(day)
    return created


def partition_window(today: date, ahead_days: int) -> tuple[date, date]:
    """The days the maintenance job keeps ready: yesterday (clock skew around midnight) to
    ``ahead_days`` after today."""
    return today - timedelta(days=1), today + timedelta(days=ahead_days)


def _inserted_count(status: str) -> int:
    """Parse asyncpg's command tag, e.g. ``INSERT 0 42``."""
    return int(status.rsplit(" ", 1)[-1])

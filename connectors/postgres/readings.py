"""Batched, idempotent writes of readings into the day-partitioned ``readings`` table.

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
from datetime import UTC, date, datetime
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
        self._days_with_partition: set[date] = set()

    async def write(self, rows: Sequence[ReadingRow]) -> int:
        """Write ``rows`` in one transaction; return how many were new."""
        if not rows:
            return 0
        async with self._pool.acquire() as conn:
            await self._ensure_partitions(conn, {row.ts.astimezone(UTC).date() for row in rows})
            try:
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

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: set[date]) -> None:
        for day in sorted(days - self._days_with_partition):
            await conn.execute("SELECT fleet_ensure_readings_partition($1)", day)
            self._days_with_partition.add(day)


def _inserted_count(status: str) -> int:
    """Parse asyncpg's command tag, e.g. ``INSERT 0 42``."""
    return int(status.rsplit(" ", 1)[-1])

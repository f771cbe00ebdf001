"""Upserts of 1-minute rollups into ``readings_1m`` (migration 0004).

Contract: when :meth:`RollupStore.upsert` returns, every rollup of the batch is committed, or a
newer aggregate of its window (a higher ``count``) already was. Records of the same window in one
batch are reduced to the one with the highest count first: one statement may not update a row
twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from schemas.status import Rollup, newest_rollups

_UPSERT = """
INSERT INTO readings_1m AS r
    (device_id, field, window_start, window_end, count, min, max, sum, mean)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[],
    $6::float8[], $7::float8[], $8::float8[], $9::float8[])
ON CONFLICT (device_id, field, window_start) DO UPDATE SET
    count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum,
    mean = EXCLUDED.mean, updated_at = now()
WHERE r.count < EXCLUDED.count
"""


class RollupStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def upsert(self, rollups: Sequence[Rollup]) -> None:
        rows = newest_rollups(rollups)
        if not rows:
            return
        columns = (
            [r.device_id for r in rows],
            [r.field for r in rows],
            [r.window_start for r in rows],
            [r.window_end for r in rows],
            [r.count for r in rows],
            [r.min for r in rows],
            [r.max for r in rows],
            [r.sum for r in rows],
            [r.mean for r in rows],
        )
        async with self._pool.acquire() as conn:
            await conn.execute(_UPSERT, *columns)

    async def close(self) -> None:
        await self._pool.close()

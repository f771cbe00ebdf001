"""The asyncpg pool every Postgres connector shares."""

from __future__ import annotations

import asyncpg


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60)
    if pool is None:  # asyncpg types the result as optional
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool

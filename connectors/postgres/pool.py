"""How every Postgres client of ours connects: the asyncpg pool and single connections.

Both take the settings, not a URL, so the TLS options (``connectors.tls.postgres_ssl``) go
with every connection.
"""

from __future__ import annotations

import asyncpg

from connectors.tls import postgres_ssl
from schemas.settings import PostgresSettings


async def create_pool(
    postgres: PostgresSettings,
    *,
    min_size: int = 1,
    max_size: int = 10,
    database: str | None = None,
) -> asyncpg.Pool:
    """A pool on ``database`` (default: the settings' one)."""
    pool = await asyncpg.create_pool(
        postgres.dsn(database),
        min_size=min_size,
        max_size=max_size,
        command_timeout=60,
        ssl=postgres_ssl(postgres),
    )
    if pool is None:  # asyncpg types the result as optional
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


async def connect(postgres: PostgresSettings, database: str | None = None) -> asyncpg.Connection:
    """One connection to ``database`` (default: the settings' one)."""
    return await asyncpg.connect(postgres.dsn(database), ssl=postgres_ssl(postgres))

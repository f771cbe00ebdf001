"""Alembic environment: runs migrations over asyncpg (the driver the services already use).

The URL is passed in by ``connectors.postgres.migrate`` through the config's main option and
asyncpg's TLS argument through ``config.attributes["connect_args"]``; this file never reads the
environment.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("connectors.postgres.migrate must set sqlalchemy.url")
    engine = create_async_engine(
        url, connect_args=context.config.attributes.get("connect_args", {})
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())

"""``devices.last_seen_at`` on the real database: forward only, and only beyond the resolution."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from connectors.postgres.last_seen import update_last_seen
from connectors.postgres.pool import create_pool
from schemas.settings import Settings
from tests.factories import device_ids

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RESOLUTION = timedelta(seconds=5)


@pytest.fixture
async def pool(stack_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack_settings.postgres)
    yield pool
    await pool.close()


@pytest.fixture
async def device(db: asyncpg.Connection) -> AsyncIterator[str]:
    device_id = device_ids(1)[0]
    token_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    await db.execute(
        "INSERT INTO devices (device_id, token_hash) VALUES ($1, $2)", device_id, token_hash
    )
    yield device_id
    await db.execute("DELETE FROM devices WHERE device_id = $1", device_id)


async def _seen(db: asyncpg.Connection, device_id: str) -> datetime | None:
    seen: datetime | None = await db.fetchval(
        "SELECT last_seen_at FROM devices WHERE device_id = $1", device_id
    )
    return seen


async def test_last_seen_moves_only_forward_and_only_by_more_than_the_resolution(
    pool: asyncpg.Pool, db: asyncpg.Connection, device: str
) -> None:
    await update_last_seen(pool, {device: T0}, RESOLUTION)
    assert await _seen(db, device) == T0  # first time: always set

    await update_last_seen(pool, {device: T0 + timedelta(seconds=4)}, RESOLUTION)
    assert await _seen(db, device) == T0  # within the resolution: no row update

    await update_last_seen(pool, {device: T0 + timedelta(seconds=6)}, RESOLUTION)
    assert await _seen(db, device) == T0 + timedelta(seconds=6)

    await update_last_seen(pool, {device: T0 - timedelta(hours=1)}, RESOLUTION)
    assert await _seen(db, device) == T0 + timedelta(seconds=6)  # never backwards


async def test_without_a_resolution_every_later_time_is_stored(
    pool: asyncpg.Pool, db: asyncpg.Connection, device: str
) -> None:
    await update_last_seen(pool, {device: T0})
    await update_last_seen(pool, {device: T0 + timedelta(milliseconds=1)})

    assert await _seen(db, device) == T0 + timedelta(milliseconds=1)

"""The readings store on the real database: plain COPY when new, no duplicates when not."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ReadingRow, ReadingStore
from streams.settings import Settings
from tests.factories import device_ids

SENSORS = json.dumps({"pir": {"motion_detected": True}})


def rows(device: str, count: int) -> list[ReadingRow]:
    now = datetime.now(UTC)
    return [
        ReadingRow(
            str(uuid.uuid4()),
            device,
            now - timedelta(seconds=n),
            now,
            "http",
            ["pir"],
            SENSORS,
            None,
        )
        for n in range(count)
    ]


@pytest.fixture
async def store(stack_settings: Settings) -> AsyncIterator[ReadingStore]:
    store = ReadingStore(await create_pool(stack_settings.postgres.dsn()))
    yield store
    await store.close()


async def test_a_batch_overlapping_stored_rows_adds_only_the_new_ones(
    store: ReadingStore, db: asyncpg.Connection
) -> None:
    device = device_ids(1)[0]
    first = rows(device, 300)
    assert await store.write(first) == 300
    replay = first[100:] + rows(device, 50) + first[:10]  # repeats, new rows, repeats again
    assert await store.write(replay) == 50
    stored = await db.fetch(
        "SELECT event_id::text AS id FROM readings WHERE device_id = $1", device
    )
    assert len(stored) == 350
    expected = {row.event_id for row in first} | {row.event_id for row in replay}
    assert {row["id"] for row in stored} == expected


async def test_a_batch_repeating_itself_is_stored_once(
    store: ReadingStore, db: asyncpg.Connection
) -> None:
    device = device_ids(1)[0]
    batch = rows(device, 20)
    assert await store.write(batch + batch) == 20
    count = await db.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", device)
    assert count == 20

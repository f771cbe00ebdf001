"""The readings store on the real database: plain COPY when new, no duplicates when not; every
value arrives as it was sent."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ReadingStore, copy_line
from schemas.settings import Settings
from tests import clock
from tests.factories import device_ids

SENSORS = json.dumps({"pir": {"motion_detected": True}}).encode()


def rows(device: str, count: int) -> list[bytes]:
    now = clock.now()
    return [
        copy_line(
            str(uuid.uuid4()),
            device,
            (now - timedelta(seconds=n)).isoformat(),
            now.isoformat(),
            "http",
            ["pir"],
            SENSORS,
            None,
        )
        for n in range(count)
    ]


@pytest.fixture
async def store(stack_settings: Settings) -> AsyncIterator[ReadingStore]:
    store = ReadingStore(await create_pool(stack_settings.postgres))
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
    expected = {event_id(line) for line in first} | {event_id(line) for line in replay}
    assert {row["id"] for row in stored} == expected


async def test_a_batch_repeating_itself_is_stored_once(
    store: ReadingStore, db: asyncpg.Connection
) -> None:
    device = device_ids(1)[0]
    batch = rows(device, 20)
    assert await store.write(batch + batch) == 20
    count = await db.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", device)
    assert count == 20


def event_id(line: bytes) -> str:
    return line.split(b"\x02", 1)[0].decode()


async def test_every_value_is_stored_as_sent(store: ReadingStore, db: asyncpg.Connection) -> None:
    """The row format joins values without quoting: JSON full of quotes, backslashes, commas,
    escaped control characters and non-ASCII text must still land byte for byte as JSON."""
    device = device_ids(1)[0]
    sensors = {
        "null": {"note": 'a "quoted", \\back\\slashed\ttext \u0001\u0002 \u00e9\u6e29 {x}'},
        "pir": {"motion_detected": True},
    }
    metadata = {"site": 'line\nbreak; comma, "quote"', "floor": -1.5e-3}
    event = str(uuid.uuid4())
    ts = "2026-11-29T08:00:00.123456+01:00"
    line = copy_line(
        event, device, ts, "2026-11-29T07:00:01Z", "mqtt", sorted(sensors),
        json.dumps(sensors, ensure_ascii=False).encode(), json.dumps(metadata).encode(),
    )  # fmt: skip
    plain = copy_line(str(uuid.uuid4()), device, ts, ts, "http", ["pir"], SENSORS, None)
    assert await store.write([line, plain]) == 2
    stored = await db.fetch(
        "SELECT event_id::text, ts, received_at, source, sensor_types, sensors::text, "
        "metadata::text FROM readings WHERE device_id = $1 ORDER BY source",
        device,
    )
    assert [row["source"] for row in stored] == ["http", "mqtt"]
    row = stored[1]
    assert row["event_id"] == event
    assert row["ts"] == datetime(2026, 11, 29, 7, 0, 0, 123456, tzinfo=UTC)
    assert row["received_at"] == datetime(2026, 11, 29, 7, 0, 1, tzinfo=UTC)
    assert row["sensor_types"] == ["null", "pir"]  # a string, not an SQL NULL element
    assert json.loads(row["sensors"]) == sensors
    assert json.loads(row["metadata"]) == metadata
    assert stored[0]["metadata"] is None


async def test_a_device_reusing_another_devices_event_id_and_time_is_stored_too(
    store: ReadingStore, db: asyncpg.Connection
) -> None:
    first, second = device_ids(2)
    shared_id, at = str(uuid.uuid4()), clock.now().isoformat()
    lines = [
        copy_line(shared_id, device, at, at, "http", ["pir"], SENSORS, None)
        for device in (first, second)
    ]
    assert await store.write(lines[:1]) == 1
    assert await store.write(lines) == 1  # the first device's repeat is the only duplicate
    stored = await db.fetch(
        "SELECT device_id FROM readings WHERE event_id = $1::uuid ORDER BY device_id", shared_id
    )
    assert [row["device_id"] for row in stored] == sorted([first, second])

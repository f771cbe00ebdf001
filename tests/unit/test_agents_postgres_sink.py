"""The Postgres sink's batch logic with a fake store: bisecting bad rows, retrying outages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest

from agents import postgres_sink
from agents.postgres_sink import ReadingsSink
from connectors.postgres.readings import ReadingRow
from schemas.events import curate, decode_curated, encode_curated
from schemas.validation import validate_reading_obj
from tests.factories import raw_event, reading
from tests.unit.fakes import FakeKafkaProducer


@dataclass
class FakeMessage:
    value: bytes
    key: bytes | None = b"dev"
    topic: str = "fleet.readings.v1"
    partition: int = 0
    offset: int = 0


@dataclass
class FakeEvent:
    message: FakeMessage


class FakeStore:
    """Refuses any batch holding a poisoned device id, like a CHECK constraint would."""

    def __init__(self, poisoned: set[str], outages: int = 0) -> None:
        self.rows: list[ReadingRow] = []
        self.poisoned = poisoned
        self.outages = outages

    async def write(self, rows: Sequence[ReadingRow]) -> int:
        if self.outages:
            self.outages -= 1
            raise ConnectionRefusedError("postgres is restarting")
        if any(row.device_id in self.poisoned for row in rows):
            raise asyncpg.DataError("value out of range")
        self.rows += rows
        return len(rows)


def curated_event(device_id: str, offset: int) -> FakeEvent:
    now = datetime.now(UTC)
    body = reading(device_id, offset)
    parsed = validate_reading_obj(body, now=now)
    curated = curate(raw_event(body, received_at=now), parsed)
    return FakeEvent(FakeMessage(encode_curated(curated), offset=offset))


@pytest.fixture
def producer() -> FakeKafkaProducer:
    return FakeKafkaProducer()


async def test_bad_rows_are_dead_lettered_and_the_rest_written(producer: FakeKafkaProducer) -> None:
    events = [curated_event(f"dev-{n}", n) for n in range(10)]
    events.append(FakeEvent(FakeMessage(b"not a curated reading", offset=10)))
    store = FakeStore(poisoned={"dev-3", "dev-7"})
    await ReadingsSink(store, producer, backoff_max_s=0.01).write_batch(events)
    assert sorted(row.device_id for row in store.rows) == sorted(
        f"dev-{n}" for n in range(10) if n not in (3, 7)
    )
    letters = [json.loads(value) for value in producer.values(postgres_sink.DEADLETTER)]
    assert sorted(letter["offset"] for letter in letters) == [3, 7, 10]
    assert {letter["stage"] for letter in letters} == {"sink.postgres"}
    assert all(letter["reason"] for letter in letters)


async def test_outage_is_retried_until_the_batch_is_written(producer: FakeKafkaProducer) -> None:
    events = [curated_event("dev-a", n) for n in range(3)]
    store = FakeStore(poisoned=set(), outages=3)
    await ReadingsSink(store, producer, backoff_max_s=0.01).write_batch(events)
    assert len(store.rows) == 3
    assert producer.sent == []


def test_row_carries_sensor_types_and_json() -> None:
    event = curated_event("dev-a", 1)
    row = postgres_sink.to_row(decode_curated(event.message.value))
    assert row.sensor_types == ["ld2410", "mq134", "pir"]
    assert json.loads(row.sensors)["pir"] == {"motion_detected": False}
    assert row.ts.tzinfo is not None

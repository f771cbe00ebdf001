"""The Postgres sink's batch logic with a fake store: bisecting bad rows, retrying outages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from agents import postgres_sink
from agents.postgres_sink import ReadingsSink
from connectors.postgres.readings import ReadingRow
from schemas.envelopes import curated_envelope
from schemas.events import curate, decode_dead_letter, encode_curated
from schemas.validation import validate_reading_obj
from tests.factories import raw_event, reading

DEADLETTER = "fleet.deadletter.v1"


@dataclass
class Message:
    value: bytes | None
    key: bytes | None = None
    topic: str = "fleet.curated.v1"
    partition: int = 0
    offset: int = 0
    timestamp: float = 0.0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


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


def curated_item(device_id: str, n: int) -> bytes:
    now = datetime.now(UTC)
    body = reading(device_id, n)
    parsed = validate_reading_obj(body, now=now)
    return encode_curated(curate(raw_event(body, received_at=now), parsed))


def envelope(devices: Sequence[str], offset: int) -> Message:
    items = [curated_item(device, n) for n, device in enumerate(devices)]
    return Message(curated_envelope(items), offset=offset)


async def test_bad_rows_are_dead_lettered_and_the_rest_written() -> None:
    messages = [
        envelope([f"dev-{n}" for n in range(5)], offset=0),
        envelope([f"dev-{n}" for n in range(5, 10)], offset=1),
        Message(b"not a curated envelope", offset=2),
    ]
    store = FakeStore(poisoned={"dev-3", "dev-7"})
    outputs = await ReadingsSink(store, DEADLETTER, backoff_max_s=0.01).write_batch(messages)
    assert sorted(row.device_id for row in store.rows) == sorted(
        f"dev-{n}" for n in range(10) if n not in (3, 7)
    )
    letters = [decode_dead_letter(r.value or b"") for r in outputs.records(DEADLETTER)]
    assert sorted((letter.offset, letter.key) for letter in letters) == [
        (0, "dev-3"),
        (1, "dev-7"),
        (2, None),
    ]
    assert {letter.stage for letter in letters} == {"sink.postgres"}
    assert all(letter.reason for letter in letters)


async def test_outage_is_retried_until_the_batch_is_written() -> None:
    store = FakeStore(poisoned=set(), outages=3)
    outputs = await ReadingsSink(store, DEADLETTER, backoff_max_s=0.01).write_batch(
        [envelope(["dev-a"] * 3, offset=0)]
    )
    assert len(store.rows) == 3
    assert outputs.records(DEADLETTER) == []


def test_row_carries_sensor_types_and_json() -> None:
    row = postgres_sink.to_row(curated_item("dev-a", 1))
    assert row.sensor_types == ["ld2410", "mq134", "pir"]
    assert json.loads(row.sensors)["pir"] == {"motion_detected": False}
    assert row.ts.tzinfo is not None
    assert row.metadata is None

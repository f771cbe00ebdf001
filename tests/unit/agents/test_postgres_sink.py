"""The Postgres sink's batch logic with a fake store: bisecting bad rows, retrying outages;
the COPY rows it builds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest
from confluent_kafka import Consumer

from agents import postgres_sink
from agents.postgres_sink import LatestReceived, ReadingsSink
from agents.sink_group import SinkGroup
from connectors.postgres.readings import copy_line
from schemas.envelopes import curated_envelope
from schemas.errors import ValidationFailure
from schemas.events import curate, decode_dead_letter, encode_curated
from schemas.settings import Settings, WorkerSettings
from schemas.validation import validate_reading_obj
from streams.metrics import WorkerMetrics
from tests import clock
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


def columns(line: bytes) -> list[bytes]:
    """A COPY row's columns (``copy_line`` joins them with 0x02 and ends the row)."""
    assert line.endswith(b"\n")
    return line[:-1].split(b"\x02")


class FakeStore:
    """Refuses any batch holding a poisoned device id, like a CHECK constraint would."""

    def __init__(self, poisoned: set[str], outages: int = 0) -> None:
        self.devices: list[str] = []
        self.poisoned = poisoned
        self.outages = outages

    async def write(self, lines: Sequence[bytes]) -> int:
        if self.outages:
            self.outages -= 1
            raise ConnectionRefusedError("postgres is restarting")
        devices = [columns(line)[1].decode() for line in lines]
        if any(device in self.poisoned for device in devices):
            raise asyncpg.DataError("value out of range")
        self.devices += devices
        return len(lines)


def curated_item(device_id: str, n: int) -> bytes:
    now = clock.now()
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
    assert sorted(store.devices) == sorted(f"dev-{n}" for n in range(10) if n not in (3, 7))
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
    assert len(store.devices) == 3
    assert outputs.records(DEADLETTER) == []


def test_row_carries_the_curated_reading_as_copy_columns() -> None:
    item = curated_item("dev-a", 1)
    reading = json.loads(item)
    line = to_line(item)
    event_id, device, ts, received_at, source, types, sensors, metadata = columns(line)
    assert (event_id.decode(), device, source) == (reading["event_id"], b"dev-a", b"http")
    assert (ts.decode(), received_at.decode()) == (reading["ts"], reading["received_at"])
    assert types == b'{"ld2410","mq134","pir"}'
    assert json.loads(sensors) == reading["sensors"]
    assert metadata == b""  # SQL NULL: the reading had none


def to_line(item: bytes) -> bytes:
    """The row the sink builds for one curated item, read as the sink reads it."""
    (row,) = postgres_sink._reader.read(curated_envelope([item])).items
    return postgres_sink.line_of(row)


def curated_with(**changes: object) -> bytes:
    reading = json.loads(curated_item("dev-a", 1))
    reading.update(changes)
    return json.dumps(reading).encode()


@pytest.mark.parametrize("ts", ["now", "infinity", "2026-11-29T07:00:00", "", "29/11/2026 07:00Z"])
def test_a_time_postgres_would_read_loosely_is_refused(ts: str) -> None:
    with pytest.raises(ValidationFailure) as caught:
        to_line(curated_with(ts=ts))
    assert caught.value.errors[0].loc == ("ts",)


def test_a_time_with_an_offset_passes_as_it_is() -> None:
    line = to_line(curated_with(received_at="2026-11-29T08:00:00.5+01:00"))
    assert columns(line)[3] == b"2026-11-29T08:00:00.5+01:00"


@pytest.mark.parametrize(
    "changes",
    [
        {"device_id": "dev\x02a"},  # would start a column
        {"event_id": "0190f2c4-7d4e-7b3a-9c1e-2f4a5b6c7d8e\ndev"},  # would start a row
        {"sensors": {"pir,x": {"motion_detected": True}}},  # would split the array literal
        {"sensors": {'pir"}': {"motion_detected": True}}},
    ],
)
def test_values_that_could_break_the_copy_row_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationFailure):
        to_line(curated_with(**changes))


def test_copy_line_quotes_sensor_types_and_compacts_json_over_lines() -> None:
    line = copy_line(
        "id", "dev", "2026-11-29T07:00:00Z", "2026-11-29T07:00:01Z", "mqtt",
        ["null", "pir"],
        b'{"null": {"v": 1},\n "pir": {"motion_detected": true}}',
        b'{"site":\r\n"a\\"b"}',
    )  # fmt: skip
    *_, types, sensors, metadata = columns(line)
    assert types == b'{"null","pir"}'  # unquoted, NULL would be an SQL NULL element
    assert sensors == b'{"null":{"v":1},"pir":{"motion_detected":true}}'
    assert metadata == b'{"site":"a\\"b"}'


def test_latest_received_is_the_latest_instant_whatever_the_text() -> None:
    latest = LatestReceived()
    for device, text in [
        ("a", "2026-11-29T07:00:16Z"),
        ("a", "2026-11-29T07:00:16.5Z"),  # later, though "." sorts before "Z"
        ("a", "2026-11-29T07:00:10.9Z"),
        ("b", "2026-11-29T08:00:00+01:00"),
        ("b", "2026-11-29T06:59:59Z"),  # the same instant as the first, less a second
        ("c", "2026-13-45T07:00:00Z"),  # Postgres refuses the row: no last seen from it
    ]:
        latest.add(device, text)
    assert latest.instants() == {
        "a": datetime(2026, 11, 29, 7, 0, 16, 500_000, tzinfo=UTC),
        "b": datetime(2026, 11, 29, 7, 0, 0, tzinfo=UTC),
    }


class FakeConsumer:
    """Answers ``consume`` from a list of already-fetched records, as librdkafka does: at most
    ``count`` of them, waiting (here: recording the timeout) only when there are fewer."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.calls: list[tuple[int, float]] = []

    def consume(self, count: int, timeout: float) -> list[Any]:
        self.calls.append((count, timeout))
        taken = min(count, self.ready)
        self.ready -= taken
        return [object()] * taken


def test_the_postgres_sink_writes_a_burst_a_linger_after_its_first_envelope() -> None:
    settings = Settings(worker=WorkerSettings(sink_batch_max=32, sink_linger_s=0.004))
    group = postgres_sink.sink_group(settings)
    burst = FakeConsumer(ready=8)
    assert len(group.take(cast(Consumer, burst))) == 8
    within = settings.worker.batch_within_s
    assert burst.calls == [(1, within), (31, 0.004)]  # not a whole window for 24 more
    idle = FakeConsumer(ready=0)
    assert group.take(cast(Consumer, idle)) == []
    assert idle.calls == [(1, within)]


def test_a_sink_without_a_linger_fills_its_batch_for_a_whole_window() -> None:
    group = SinkGroup(Settings(), "other", ["t"], 8, within_s=0.5)
    consumer = FakeConsumer(ready=20)
    assert len(group.take(cast(Consumer, consumer))) == 8
    assert consumer.calls == [(8, 0.5)]


def test_each_committed_rows_age_is_observed_refused_ones_not() -> None:
    metrics = WorkerMetrics()
    committed = datetime(2026, 11, 28, 12, 0, 10, tzinfo=UTC)
    stamps = [
        "2026-11-28T12:00:09.800000Z",  # 0.2 s
        "2026-11-28T12:00:00+00:00",  # 10 s
        "2026-11-28T12:00:05Z",  # refused by Postgres: not counted
        "2026-11-28T12:00:30Z",  # a device clock ahead: 0
        "not a time",  # cannot be: no age
    ]
    postgres_sink.observe_ages(stamps, {2}, committed, metrics)
    histogram = metrics.reading_to_row
    counts = histogram.counts()
    assert sum(counts) == 3
    assert counts[histogram.bounds.index(0.05)] == 1  # the clock ahead
    assert counts[histogram.bounds.index(0.25)] == 1
    assert counts[histogram.bounds.index(10.0)] == 1

"""The validate step without Kafka: every reading of a batch ends up in exactly one output,
valid ones curated (on their device's partition), the rest dead-lettered with their reason."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from agents.validate import Validation
from connectors.kafka.partitioner import partition_for
from schemas.envelopes import decode_curated_items, encode_item, raw_envelope
from schemas.events import decode_curated, decode_dead_letter, encode_raw_event
from streams.settings import TopicSettings
from tests.factories import raw_event, reading

TOPICS = TopicSettings()
PARTITIONS = 4


@dataclass
class Message:
    value: bytes | None
    key: bytes | None = None
    topic: str = "fleet.raw.v1"
    partition: int = 0
    offset: int = 0
    timestamp: float = field(default_factory=time.time)
    headers: Any = None


def run(*messages: Message) -> Any:
    validation = Validation(TOPICS, curated_partitions=PARTITIONS, envelope_max_bytes=4096)
    return validation.run(list(messages), datetime.now(UTC))


def test_an_envelope_with_a_bad_reading_curates_the_rest_and_dead_letters_that_one() -> None:
    good = [raw_event(reading(f"esp32-{n}", n)) for n in range(5)]
    bad = raw_event(reading("esp32-x", 9, sensors={"pir": {"motion_detected": 1}}))
    outputs = run(Message(raw_envelope([encode_item(e) for e in [*good[:2], bad, *good[2:]]])))

    curated = [decode_curated(v) for _, v, _, _ in outputs.records(TOPICS.readings) if v]
    assert [c.event_id for c in curated] == [e.event_id for e in good]
    assert [key for key, *_ in outputs.records(TOPICS.readings)] == [
        e.device_id.encode() for e in good
    ]
    (letter_record,) = outputs.records(TOPICS.deadletter)
    assert letter_record.value is not None
    letter = decode_dead_letter(letter_record.value)
    assert letter.event_id == bad.event_id
    assert "sensors.pir.motion_detected" in letter.reason
    # The letter's original is a one-item envelope: replaying it re-validates that reading.
    assert letter.original == raw_envelope([encode_item(bad)])


def test_curated_envelopes_hold_only_readings_of_their_partition() -> None:
    events = [raw_event(reading(f"esp32-{n % 9}", n)) for n in range(30)]
    outputs = run(Message(raw_envelope(encode_item(e) for e in events)))
    seen = []
    for record in outputs.records(TOPICS.curated):
        for item in decode_curated_items(record.value):
            device = decode_curated(bytes(item)).device_id
            assert partition_for(device, PARTITIONS) == record.partition
            seen.append(device)
    assert sorted(seen) == sorted(e.device_id for e in events)


def test_curated_envelopes_are_cut_below_the_size_limit() -> None:
    events = [raw_event(reading("esp32-a", n)) for n in range(100)]
    outputs = run(Message(raw_envelope(encode_item(e) for e in events)))
    envelopes = outputs.records(TOPICS.curated)
    assert len(envelopes) > 1
    assert all(record.value is not None and len(record.value) <= 4096 for record in envelopes)
    assert sum(len(decode_curated_items(r.value)) for r in envelopes) == 100


def test_legacy_single_events_and_bare_readings_are_still_processed() -> None:
    legacy = raw_event(reading("esp32-a", 1))
    bare = reading("esp32-b", 2)
    outputs = run(
        Message(encode_raw_event(legacy), offset=1),
        Message(_json(bare), offset=2),
    )
    curated = [decode_curated(v) for _, v, _, _ in outputs.records(TOPICS.readings) if v]
    assert [c.device_id for c in curated] == ["esp32-a", "esp32-b"]
    assert curated[0].event_id == legacy.event_id
    assert curated[1].source == "kafka"
    again = run(Message(_json(bare), offset=2))
    (repeat,) = [decode_curated(v) for _, v, _, _ in again.records(TOPICS.readings) if v]
    assert repeat.event_id == curated[1].event_id, "a redelivered bare reading keeps its id"


def test_null_garbage_and_broken_envelopes_are_dead_letters_not_crashes() -> None:
    broken = raw_envelope([b'{"event_id": 1}'])
    outputs = run(
        Message(None, offset=1), Message(b"\x00\xff garbage", offset=2), Message(broken, offset=3)
    )
    letters = [decode_dead_letter(r.value or b"") for r in outputs.records(TOPICS.deadletter)]
    assert [letter.offset for letter in letters] == [1, 2, 3]
    assert [letter.original for letter in letters] == [b"", b"\x00\xff garbage", b'{"event_id": 1}']
    assert letters[2].item == 0
    assert all(letter.reason and letter.stage == "validate" for letter in letters)
    assert outputs.records(TOPICS.readings) == []


def _json(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body)

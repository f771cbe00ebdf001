"""The validate step without Kafka: every reading of a batch ends up in exactly one output,
valid ones curated (on their device's partition), the rest dead-lettered with their reason."""

from __future__ import annotations

import functools
import gc
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from agents.enrichment import Enricher
from agents.validate import Validation, _runs
from connectors.kafka.partitioner import partition_for
from schemas.catalogue import GenericLimits
from schemas.compiled_core import compiled_core
from schemas.devices import Device
from schemas.envelopes import (
    curated_envelope,
    decode_curated_envelope,
    decode_curated_items,
    encode_item,
    raw_envelope,
)
from schemas.errors import ValidationFailure
from schemas.events import decode_curated, decode_dead_letter, encode_raw_event
from schemas.settings import TopicSettings
from tests import clock
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


@pytest.fixture(autouse=True, params=["python", "compiled"])
def core(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test here runs with the Python reference and with the compiled core
    (``FLEET_STREAM__CORE``): the same batches must give the same outputs."""
    global _CORE
    _CORE = request.param
    _core({})  # built (msgspec.inspect leaves cycles behind) before any test looks for cycles
    yield
    _CORE = "python"


_CORE = "python"


def _core(options: dict[str, Any]) -> Any:
    if _CORE == "python":
        return None
    return compiled_for(options)


def compiled_for(options: dict[str, Any]) -> Any:
    """The compiled core for the validate options of a test (built once per set of them)."""
    return _compiled(
        options.get("unknown_sensors", "deadletter"),
        options.get("generic_limits", GenericLimits()),
        options.get("max_replays", 1),
    )


@functools.cache
def _compiled(unknown_sensors: Any, limits: GenericLimits, max_replays: int) -> Any:
    return compiled_core(unknown_sensors=unknown_sensors, limits=limits, max_replays=max_replays)


def run(*messages: Message) -> Any:
    validation = Validation(
        TOPICS, curated_partitions=PARTITIONS, envelope_max_bytes=4096, core=_core({})
    )
    return validation.run(list(messages), clock.now())


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


# --- enrichment, policies, positions (the stream core) -----------------------------------------


def _device(device_id: str, **fields: Any) -> Device:
    now = clock.now()
    return Device(
        device_id=device_id, token_hash="0" * 64, created_at=now, updated_at=now, **fields
    )


def _validation(devices: dict[str, Device], **options: Any) -> Validation:
    policies = {"unknown": options.pop("unknown", "pass"), "disabled": "deadletter"}
    enricher = Enricher(_Devices(devices), **policies)
    return Validation(
        TOPICS,
        curated_partitions=PARTITIONS,
        envelope_max_bytes=4096,
        enricher=enricher,
        core=_core(options),
        **options,
    )


@dataclass
class _Devices:
    devices: dict[str, Device]

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)


def _curated(outputs: Any) -> list[Any]:
    return [decode_curated(v) for _, v, _, _ in outputs.records(TOPICS.readings) if v]


def _letters(outputs: Any) -> list[Any]:
    return [decode_dead_letter(v) for _, v, _, _ in outputs.records(TOPICS.deadletter) if v]


def test_readings_carry_their_device_registry_entry() -> None:
    lobby = _device(
        "esp32-lobby", name="Lobby", profile="esp32", tags=["a"], metadata={"location": "hall"}
    )
    events = [raw_event(reading("esp32-lobby", 1)), raw_event(reading("esp32-stranger", 2))]
    outputs = _validation({"esp32-lobby": lobby}).run(
        [Message(raw_envelope([encode_item(e) for e in events]))], clock.now()
    )
    known, stranger = _curated(outputs)
    assert (known.device_name, known.profile, known.tags, known.location) == (
        "Lobby",
        "esp32",
        ["a"],
        "hall",
    )
    assert known.lag_ms is not None and known.lag_ms >= 0
    assert (stranger.device_name, stranger.tags) == (None, [])


def test_unknown_and_disabled_devices_are_dead_letters_when_the_policy_says_so() -> None:
    off = _device("esp32-off", is_enabled=False)
    events = [raw_event(reading("esp32-off", 1)), raw_event(reading("esp32-stranger", 2))]
    outputs = _validation({"esp32-off": off}, unknown="deadletter").run(
        [Message(raw_envelope([encode_item(e) for e in events]))], clock.now()
    )
    assert _curated(outputs) == []
    reasons = sorted(letter.reason for letter in _letters(outputs))
    assert reasons == [
        "device_id: device esp32-off is disabled",
        "device_id: device esp32-stranger is not registered",
    ]


def test_unknown_sensor_types_pass_as_generic_only_when_the_setting_says_so() -> None:
    body = reading("esp32-a", 1, sensors={"bme280": {"temperature": 21.5, "ok": True}})
    value = raw_envelope([encode_item(raw_event(body))])
    strict = _validation({}).run([Message(value)], clock.now())
    assert "unknown sensor type" in _letters(strict)[0].reason
    generic = _validation({}, unknown_sensors="generic").run([Message(value)], clock.now())
    (curated,) = _curated(generic)
    assert msgspec.json.decode(curated.sensors) == {"bme280": {"temperature": 21.5, "ok": True}}
    nested = reading("esp32-a", 1, sensors={"bme280": {"temperature": {"c": 1}}})
    refused = _validation({}, unknown_sensors="generic").run(
        [Message(raw_envelope([encode_item(raw_event(nested))]))], clock.now()
    )
    assert _letters(refused)[0].errors[0].loc[:3] == ("payload", "sensors", "bme280")


def test_a_reading_over_the_generic_bounds_is_a_dead_letter_with_the_reason() -> None:
    """Readings produced straight to the raw topic never passed an edge: the worker checks the
    FLEET_GENERIC__* bounds itself, and only the reading over them is refused."""
    hostile = {f"s{n}": {f"f{m}": m for m in range(4)} for n in range(3)}
    events = [
        raw_event(reading("esp32-hostile", 1, sensors=hostile)),
        raw_event(reading("esp32-other", 1, sensors={"s0": {"f0": 1}})),
    ]
    value = raw_envelope([encode_item(e) for e in events])
    limits = GenericLimits(fields_per_reading=8)
    outputs = _validation({}, unknown_sensors="generic", generic_limits=limits).run(
        [Message(value)], clock.now()
    )
    assert [c.device_id for c in _curated(outputs)] == ["esp32-other"]
    (letter,) = _letters(outputs)
    assert letter.key == "esp32-hostile"
    assert letter.reason.startswith("payload.sensors.s2.f0: more than 8 fields")
    at_bound = {f"s{n}": {f"f{m}": m for m in range(4)} for n in range(2)}
    value = raw_envelope([encode_item(raw_event(reading("esp32-hostile", 2, sensors=at_bound)))])
    outputs = _validation({}, unknown_sensors="generic", generic_limits=limits).run(
        [Message(value)], clock.now()
    )
    assert [c.device_id for c in _curated(outputs)] == ["esp32-hostile"]


def test_a_reading_replayed_more_often_than_allowed_is_a_dead_letter_again() -> None:
    once = msgspec.structs.replace(raw_event(reading("esp32-a", 1)), replayed=1)
    twice = msgspec.structs.replace(raw_event(reading("esp32-a", 2)), replayed=2)
    outputs = _validation({}).run(
        [Message(raw_envelope([encode_item(once), encode_item(twice)]))], clock.now()
    )
    assert [c.event_id for c in _curated(outputs)] == [once.event_id]
    assert [c.replayed for c in _curated(outputs)] == [1]
    (letter,) = _letters(outputs)
    assert letter.event_id == twice.event_id and "replayed 2 times" in letter.reason


def test_curated_items_carry_the_position_of_their_raw_record() -> None:
    events = [raw_event(reading("esp32-a", n)) for n in range(3)]
    message = Message(raw_envelope([encode_item(e) for e in events]), partition=2, offset=41)
    outputs = _validation({}).run([message], clock.now())
    (record,) = outputs.records(TOPICS.curated)
    envelope = decode_curated_envelope(record.value)
    assert envelope.positions == [(2, 41, 0), (2, 41, 1), (2, 41, 2)]


def _greedy_runs(sizes: list[int], max_bytes: int) -> list[list[int]]:
    """The split the envelope budget asks for: a new run when the next item would not fit."""
    runs: list[list[int]] = []
    size = len(curated_envelope([], []))
    for index, item_size in enumerate(sizes):
        grows = item_size + 1 + 42
        if runs and runs[-1] and size + grows > max_bytes:
            runs.append([])
            size = len(curated_envelope([], []))
        if not runs:
            runs.append([])
        runs[-1].append(index)
        size += grows
    return runs


def test_curated_items_split_into_runs_under_the_envelope_budget() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        items = [b"x" * rng.randint(1, 300) for _ in range(rng.randint(0, 30))]
        max_bytes = rng.choice([1, 100, 400, 1000, 4000, 100_000])
        runs = [list(range(len(items)))[run] for run in _runs(items, max_bytes)]
        assert runs == _greedy_runs([len(item) for item in items], max_bytes)


def test_invalid_readings_leave_no_reference_cycles_behind() -> None:
    """A raised failure bound to a local of a frame on its own traceback is a reference cycle
    that keeps every frame above it alive, the batch's outputs included, until a garbage
    collection: at 1 % invalid readings the worker spent ~8 % of its CPU in the collector."""
    bad_payloads = [
        reading("esp32-a", 1, sensors={"pir": {"motion_detected": 1}}),  # wrong type
        {**reading("esp32-a", 2), "sensors": {"pir": None}},  # no sensor at all
        reading("esp32-a", 3, sensors={"bme280": {"temperature": 1}}),  # unknown type
        {**reading("esp32-a", 4), "device_id": "esp32-other"},  # not the envelope's device
    ]
    events = [raw_event(reading("esp32-a", 0))]
    events += [msgspec.structs.replace(raw_event(b), device_id="esp32-a") for b in bad_payloads]
    value = raw_envelope(encode_item(e) for e in events)
    gc.collect()
    gc.disable()
    try:
        outputs = run(Message(value), Message(b"garbage", offset=1))
        assert len(outputs.records(TOPICS.deadletter)) == len(bad_payloads) + 1
        del outputs
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_curated_readers_refuse_records_that_are_not_curated_envelopes() -> None:
    items = [b'{"a":1}', b'{"a":2}']
    value = curated_envelope(items, [(0, 1, 0), (0, 1, 1)])
    assert [bytes(i) for i in decode_curated_items(value)] == items
    assert decode_curated_envelope(value).positions == [(0, 1, 0), (0, 1, 1)]
    for decode in (decode_curated_items, decode_curated_envelope):
        for bad in (raw_envelope(items), b"", b'{"format":"curated-envelope/1"}'):
            with pytest.raises(ValidationFailure):
                decode(bad)

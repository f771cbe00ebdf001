"""Kafka message contracts (schemas.events): envelopes, curated readings, dead letters."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from schemas.errors import FieldError, ValidationFailure
from schemas.events import (
    CuratedReading,
    DeadLetter,
    RawEvent,
    curate,
    dead_letter_for,
    decode_curated,
    decode_dead_letter,
    decode_raw_event,
    encode_curated,
    encode_dead_letter,
    encode_raw_event,
    new_event_id,
    raw_event_for,
)
from schemas.readings import Mq134, Pir, Sensors
from schemas.validation import decode_reading
from tests.pipeline_helpers import process_raw

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 25, 11, 59, 59, 123456, tzinfo=UTC)
EVENT_ID = "0194c0de-0000-7000-8000-000000000001"
DEVICE = "esp32-lobby-01"

# Odd-but-valid JSON on purpose: whitespace and escapes must survive byte for byte.
PAYLOAD = (
    b'{ "device_id" : "esp32-lobby-01",\n  "timestamp": "2026-11-25T13:59:00+02:00",'
    b' "sensors": {"pir": {"motion_detected": true},'
    b' "mq134": {"gas_concentration": 42.0, "raw_value": 2048}},'
    b' "metadata": {"room": "caf\\u00e9"} }'
)


def envelope(payload: Any = None, **overrides: Any) -> bytes:
    """An encoded fleet.raw.v1 value; ``payload`` is spliced in verbatim when bytes."""
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "device_id": DEVICE,
        "received_at": "2026-11-25T11:59:59.123456Z",
        "source": "http",
        "schema": 1,
    }
    fields.update(overrides)
    fields = {k: v for k, v in fields.items() if v is not None}
    head = json.dumps(fields)[:-1]
    body = PAYLOAD if payload is None else payload
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return f'{head}, "payload": '.encode() + raw + b"}"


def failure_of_process(data: bytes) -> ValidationFailure:
    with pytest.raises(ValidationFailure) as info:
        process_raw(data, now=NOW)
    return info.value


# --- event ids ---------------------------------------------------------------------------------


def test_new_event_id_is_a_unique_time_ordered_uuid7() -> None:
    ids = [new_event_id() for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)  # v7 ids sort by creation time
    assert all(i == i.lower() for i in ids)


# --- RawEvent ----------------------------------------------------------------------------------


def test_raw_event_roundtrip_preserves_payload_bytes_exactly() -> None:
    event = RawEvent(
        event_id=EVENT_ID,
        device_id=DEVICE,
        received_at=RECEIVED,
        source="mqtt",
        payload=msgspec.Raw(PAYLOAD),
    )
    encoded = encode_raw_event(event)
    assert PAYLOAD in encoded  # spliced verbatim, not re-serialised
    decoded = decode_raw_event(encoded)
    assert bytes(decoded.payload) == PAYLOAD
    assert (decoded.event_id, decoded.device_id, decoded.source, decoded.schema) == (
        EVENT_ID,
        DEVICE,
        "mqtt",
        1,
    )
    assert decoded.received_at == RECEIVED
    assert json.loads(encoded)["received_at"] == "2026-11-25T11:59:59.123456Z"


def test_raw_event_normalises_received_at_to_utc_and_event_id_to_lower_case() -> None:
    event = RawEvent(
        event_id=EVENT_ID.upper(),
        device_id=DEVICE,
        received_at=datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1))),
        source="upload",
        payload=msgspec.Raw(PAYLOAD),
    )
    assert event.received_at.tzinfo is UTC
    assert event.received_at == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert event.event_id == EVENT_ID


def test_raw_event_for_reuses_client_event_id_or_generates_one() -> None:
    body = json.loads(PAYLOAD)
    with_id = decode_reading(json.dumps({**body, "event_id": EVENT_ID.upper()}), now=NOW)
    without_id = decode_reading(PAYLOAD, now=NOW)

    reused = raw_event_for(with_id, b"{}", source="http", received_at=RECEIVED)
    assert reused.event_id == EVENT_ID
    generated = raw_event_for(without_id, PAYLOAD, source="mqtt", received_at=RECEIVED)
    assert uuid.UUID(generated.event_id).version == 7
    assert generated.device_id == DEVICE
    assert bytes(generated.payload) == PAYLOAD


def test_raw_event_for_requires_an_aware_received_at() -> None:
    reading = decode_reading(PAYLOAD, now=NOW)
    with pytest.raises(ValueError, match="received_at"):
        raw_event_for(reading, PAYLOAD, source="http", received_at=datetime(2026, 1, 1))


def test_unknown_envelope_fields_are_ignored_for_forward_compatibility() -> None:
    event = decode_raw_event(envelope(trace_id="abc"))
    assert event.event_id == EVENT_ID


@pytest.mark.parametrize(
    ("data", "loc", "kind"),
    [
        (b"\xff\xfe not json", (), "json"),
        (b"[]", (), "type"),
        (envelope(event_id=None), ("event_id",), "missing"),
        (envelope(event_id="1234"), ("event_id",), "pattern"),
        (envelope(device_id="bad id"), ("device_id",), "pattern"),
        (envelope(received_at="2026-11-25T12:00:00"), ("received_at",), "timezone"),
        (envelope(received_at="soon"), ("received_at",), "datetime"),
        (envelope(source="carrier-pigeon"), ("source",), "enum"),
        (envelope(schema=2), ("schema",), "enum"),
        (envelope()[:-1], (), "json"),
    ],
)
def test_malformed_envelopes_name_the_field(data: bytes, loc: tuple[str, ...], kind: str) -> None:
    with pytest.raises(ValidationFailure) as info:
        decode_raw_event(data)
    assert [(e.loc, e.type) for e in info.value.errors] == [(loc, kind)]
    assert info.value.reason


def test_envelope_without_payload_is_rejected() -> None:
    data = json.dumps(
        {
            "event_id": EVENT_ID,
            "device_id": DEVICE,
            "received_at": "2026-11-25T12:00:00Z",
            "source": "http",
        }
    ).encode()
    with pytest.raises(ValidationFailure) as info:
        decode_raw_event(data)
    assert info.value.errors[0].loc == ("payload",)


# --- CuratedReading ----------------------------------------------------------------------------


def test_curate_uses_reading_timestamp_in_utc() -> None:
    raw = decode_raw_event(envelope())
    curated = curate(raw, decode_reading(raw.payload, now=NOW))
    assert curated.ts == datetime(2026, 11, 25, 11, 59, tzinfo=UTC)
    assert curated.ts.tzinfo is UTC
    assert curated.received_at == RECEIVED
    assert (curated.event_id, curated.device_id, curated.source) == (EVENT_ID, DEVICE, "http")
    sensors = msgspec.json.decode(curated.sensors, type=Sensors)
    assert sensors == Sensors(
        pir=Pir(motion_detected=True), mq134=Mq134(gas_concentration=42.0, raw_value=2048)
    )
    assert curated.metadata == {"room": "café"}
    assert (curated.processed_at, curated.lag_ms, curated.device_name) == (None, None, None)


def test_curate_falls_back_to_received_at_without_timestamp() -> None:
    raw = decode_raw_event(
        envelope({"device_id": DEVICE, "sensors": {"pir": {"motion_detected": True}}})
    )
    curated = curate(raw, decode_reading(raw.payload, now=NOW))
    assert curated.ts == RECEIVED


def test_curated_encoding_omits_absent_sensors_and_fields() -> None:
    curated = process_raw(envelope(), now=NOW)
    encoded = json.loads(encode_curated(curated))
    assert encoded == {
        "schema_version": 1,
        "event_id": EVENT_ID,
        "device_id": DEVICE,
        "ts": "2026-11-25T11:59:00Z",
        "received_at": "2026-11-25T11:59:59.123456Z",
        "source": "http",
        "sensors": {
            "pir": {"motion_detected": True},
            "mq134": {"gas_concentration": 42.0, "raw_value": 2048},
        },
        "metadata": {"room": "café"},
        "device_name": None,
        "profile": None,
        "location": None,
        "tags": [],
        "processed_at": "2026-11-25T12:00:00Z",
        "lag_ms": pytest.approx(876.544),
        "replayed": 0,
    }


def test_curated_roundtrip() -> None:
    curated = process_raw(envelope(), now=NOW)
    assert decode_curated(encode_curated(curated)) == curated


def test_decode_curated_rejects_garbage_with_validation_failure() -> None:
    with pytest.raises(ValidationFailure) as info:
        decode_curated(b'{"schema_version": 1}')
    assert info.value.errors[0].type == "missing"


# --- DeadLetter --------------------------------------------------------------------------------


def make_letter(original: bytes, **overrides: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "stage": "validate",
        "reason": "sensors.pir.motion_detected: Expected `bool`, got `str`",
        "errors": [FieldError(("payload", "sensors", "pir", "motion_detected"), "bad", "type")],
        "error_type": "ValidationFailure",
        "source_topic": "fleet.raw.v1",
        "partition": 3,
        "offset": 1234,
        "key": DEVICE,
        "original": original,
        "failed_at": NOW,
        "event_id": EVENT_ID,
    }
    fields.update(overrides)
    return DeadLetter(**fields)


@pytest.mark.parametrize("original", [b"", b"\x00\xff\xfe not json at all", envelope()])
def test_dead_letter_roundtrip_preserves_original_bytes(original: bytes) -> None:
    letter = make_letter(original)
    encoded = encode_dead_letter(letter)
    as_json = json.loads(encoded)
    assert base64.b64decode(as_json["original"]) == original  # bytes travel as base64
    assert as_json["errors"] == [
        {"loc": ["payload", "sensors", "pir", "motion_detected"], "message": "bad", "type": "type"}
    ]
    assert decode_dead_letter(encoded) == letter


def test_dead_letter_errors_default_to_empty() -> None:
    fields = {f: getattr(make_letter(b"x"), f) for f in DeadLetter.__struct_fields__}
    del fields["errors"]
    letter = DeadLetter(**fields)
    assert letter.errors == []
    assert decode_dead_letter(encode_dead_letter(letter)).errors == []


def test_dead_letter_for_validation_failure_carries_errors_and_event_id() -> None:
    failure = failure_of_process(envelope({"device_id": DEVICE, "sensors": {}}))
    letter = dead_letter_for(
        failure,
        stage="validate",
        source_topic="fleet.raw.v1",
        partition=0,
        offset=7,
        key=DEVICE,
        original=b"orig",
        failed_at=NOW,
    )
    assert letter.reason == "payload.sensors: at least one sensor is required"
    assert letter.errors == failure.errors
    assert letter.error_type == "schemas.errors.ValidationFailure"
    assert letter.event_id == EVENT_ID
    assert decode_dead_letter(encode_dead_letter(letter)).original == b"orig"


def test_dead_letter_for_other_exceptions_has_one_line_reason() -> None:
    letter = dead_letter_for(
        ConnectionError("db down\nretry later"),
        stage="sink.postgres",
        source_topic="fleet.readings.v1",
        partition=1,
        offset=2,
        key=None,
        original=b"{}",
        failed_at=NOW,
        event_id="e-1",
    )
    assert letter.reason == "ConnectionError: db down retry later"
    assert letter.errors == []
    assert letter.error_type == "ConnectionError"
    assert letter.event_id == "e-1"


# --- process_raw -------------------------------------------------------------------------------


def test_process_raw_happy_path() -> None:
    curated = process_raw(envelope(), now=NOW)
    assert isinstance(curated, CuratedReading)
    assert curated.event_id == EVENT_ID
    assert msgspec.json.decode(curated.sensors)["pir"] == {"motion_detected": True}


def test_process_raw_invalid_reading_is_located_under_payload() -> None:
    bad = {"device_id": DEVICE, "sensors": {"ld2410": {"presence": "yes"}}}
    failure = failure_of_process(envelope(bad))
    assert failure.errors[0].loc == ("payload", "sensors", "ld2410", "presence")
    assert "sensors.ld2410.presence" in failure.reason
    assert failure.event_id == EVENT_ID


def test_process_raw_batch_payload_is_rejected() -> None:
    failure = failure_of_process(envelope([{"device_id": DEVICE}]))
    assert failure.errors[0].loc == ("payload",)
    assert failure.errors[0].type == "type"


def test_process_raw_rejects_device_id_mismatch() -> None:
    other = {"device_id": "esp32-other", "sensors": {"pir": {"motion_detected": True}}}
    failure = failure_of_process(envelope(other))
    assert failure.errors[0].loc == ("payload", "device_id")
    assert failure.errors[0].type == "mismatch"
    assert "esp32-other" in failure.reason
    assert failure.event_id == EVENT_ID


def test_process_raw_rejects_future_reading() -> None:
    future = {
        "device_id": DEVICE,
        "timestamp": "2026-11-27T12:00:00Z",
        "sensors": {"pir": {"motion_detected": True}},
    }
    failure = failure_of_process(envelope(future))
    assert failure.errors[0].loc == ("payload", "timestamp")
    assert failure.errors[0].type == "future_timestamp"
    # A replay two days later accepts it: the guard is relative to ``now``.
    assert process_raw(envelope(future), now=NOW + timedelta(days=2)).ts.day == 27


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"\xff", envelope(event_id="x"), envelope(b'{"device_id": "a",')],
)
def test_process_raw_malformed_envelopes(data: bytes) -> None:
    failure = failure_of_process(data)
    assert failure.errors
    assert failure.reason


def test_process_raw_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="now"):
        process_raw(envelope(), now=datetime(2026, 11, 25))


# --- fuzz --------------------------------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    leaves: list[Any] = [None, True, 3, -1.5, 2**80, "", "pir", "2026-11-25T12:00:00Z", "\ud800"]
    if depth > 3 or rng.random() < 0.5:
        return rng.choice(leaves)
    if rng.random() < 0.3:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["device_id", "sensors", "pir", "motion_detected", "timestamp", "payload", "x"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_fuzz_process_raw_raises_only_validation_failure() -> None:
    rng = random.Random(4242)
    good = envelope()
    outcomes = {"ok": 0, "invalid": 0}
    for i in range(400):
        kind = i % 4
        if kind == 0:
            data = rng.randbytes(rng.randrange(80))
        elif kind == 1:
            cut = rng.randrange(len(good))
            data = good[:cut] + rng.randbytes(rng.randrange(3)) + good[cut + 1 :]
        elif kind == 2:
            value = json.dumps(random_value(rng), ensure_ascii=rng.random() < 0.5)
            data = envelope(value.encode("utf-8", "surrogatepass"))
        else:
            fields = {
                "event_id": rng.choice([EVENT_ID, "x", None, 7]),
                "source": rng.choice(["http", "mqtt", "ftp", None]),
                "received_at": rng.choice(["2026-11-25T12:00:00Z", "", None]),
            }
            data = envelope(random_value(rng) if rng.random() < 0.5 else None, **fields)
        try:
            process_raw(data, now=NOW)
            outcomes["ok"] += 1
        except ValidationFailure as exc:
            assert exc.errors
            assert "\n" not in exc.reason
            outcomes["invalid"] += 1
    assert outcomes["ok"] > 0
    assert outcomes["invalid"] > 200

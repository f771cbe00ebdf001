"""The Avro contracts: compatible with every kept version, in step with the structs, framed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import msgspec
import pytest

from agents.validate import Validation
from schemas.avro_codec import (
    CONTRACTS,
    SCHEMA_DIR,
    AvroEncoder,
    FramingError,
    dead_letter_datum,
    decode,
    framed_schema_id,
    parsed_schema,
    reading_datum,
    rollup_datum,
    schema_json,
    status_datum,
)
from schemas.avro_compat import backward_problems, history
from schemas.catalogue import sensor_types
from schemas.envelopes import raw_envelope
from schemas.errors import FieldError
from schemas.events import CuratedReading, DeadLetter, encode_raw_event
from schemas.settings import TopicSettings
from schemas.status import Rollup, StatusChange
from tests.clock import now
from tests.factories import raw_event, reading

CASES = Path(__file__).parents[2] / "avro_cases"
NOW = now().replace(microsecond=123456)
EVENT_ID = "019ab000-0000-7000-8000-000000000001"


def _fields(contract: str) -> list[str]:
    return [field["name"] for field in json.loads(schema_json(contract))["fields"]]  # type: ignore[arg-type]


# --- compatibility -----------------------------------------------------------------------


@pytest.mark.parametrize("contract", CONTRACTS)
def test_current_schema_reads_every_kept_version(contract: Any) -> None:
    current = (SCHEMA_DIR / f"{contract}.avsc").read_text("utf-8")
    kept = history(contract)
    assert kept, f"schemas/avro/history/{contract}.v1.avsc is missing"
    for old in kept:
        assert backward_problems(current, old.read_text("utf-8")) == [], old.name


@pytest.mark.parametrize("contract", CONTRACTS)
def test_newest_kept_version_is_the_current_schema(contract: Any) -> None:
    """A change to a contract must be published as history/<contract>.v<N+1>.avsc."""
    newest = history(contract)[-1]
    current = json.loads((SCHEMA_DIR / f"{contract}.avsc").read_text("utf-8"))
    assert json.loads(newest.read_text("utf-8")) == current, (
        f"{contract}.avsc differs from {newest.name}: copy it to the next version in history/"
    )


def test_a_new_required_field_is_not_backward_compatible() -> None:
    v1 = history("readings")[0].read_text("utf-8")
    problems = backward_problems((CASES / "readings.incompatible.avsc").read_text("utf-8"), v1)
    assert len(problems) == 1 and "site_id" in problems[0]
    assert "reader_field_missing_default_value" in problems[0]


def test_a_narrowed_type_is_not_backward_compatible() -> None:
    v1 = history("readings")[0].read_text("utf-8")
    problems = backward_problems((CASES / "readings.narrowed.avsc").read_text("utf-8"), v1)
    assert problems and "/fields/3/type" in problems[0]


def test_a_new_optional_field_is_backward_compatible_and_reads_old_records() -> None:
    v1 = history("readings")[0].read_text("utf-8")
    newer = (CASES / "readings.compatible.avsc").read_text("utf-8")
    assert backward_problems(newer, v1) == []
    value = AvroEncoder("readings", 1).readings()(_curated())
    datum = decode(value, parsed_schema("readings"), fastavro.parse_schema(json.loads(newer)))
    assert datum["site_id"] is None and datum["device_id"] == "esp32-1"


def test_history_lists_versions_in_numeric_order(tmp_path: Path) -> None:
    for name in (
        "readings.v10.avsc",
        "readings.v2.avsc",
        "readings-1m.v1.avsc",
        "readings.v1.avsc",
    ):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in history("readings", tmp_path)] == [
        "readings.v1.avsc",
        "readings.v2.avsc",
        "readings.v10.avsc",
    ]


# --- in step with the structs ------------------------------------------------------------


def test_readings_schema_has_every_curated_reading_field() -> None:
    """Another field on CuratedReading must be added to readings.avsc (optional) too."""
    assert set(CuratedReading.__struct_fields__) <= set(_fields("readings"))


def test_readings_schema_has_every_catalogue_sensor() -> None:
    sensors = json.loads(schema_json("readings"))["fields"][6]["type"]
    assert sensors["name"] == "Sensors"
    assert set(sensor_types()) <= {field["name"] for field in sensors["fields"]}


@pytest.mark.parametrize(
    ("contract", "struct"),
    [("device-status", StatusChange), ("readings-1m", Rollup), ("deadletter", DeadLetter)],
)
def test_schema_fields_are_the_struct_fields(contract: Any, struct: Any) -> None:
    assert set(_fields(contract)) == set(struct.__struct_fields__)


# --- encoding ----------------------------------------------------------------------------


def _curated(**changes: Any) -> CuratedReading:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "device_id": "esp32-1",
        "ts": NOW - timedelta(seconds=1),
        "received_at": NOW,
        "source": "mqtt",
        "sensors": msgspec.Raw(
            b'{"ld2410":{"presence":true,"distance_cm":120},"mq134":{"gas_concentration":12.5},'
            b'"generic":{"co2_ppm":415,"door_open":false},"soil":{"moisture":0.3}}'
        ),
        "metadata": {"floor": 2, "ok": True, "ratio": 0.5, "wing": "east"},
        "device_name": "Lobby",
        "profile": "esp32",
        "location": {"building": "A"},
        "tags": ["lobby", "ground"],
        "processed_at": NOW,
        "lag_ms": 12.5,
        "replayed": 1,
    }
    return CuratedReading(**{**fields, **changes})


def test_reading_round_trip_keeps_every_value_and_its_type() -> None:
    value = AvroEncoder("readings", 42).readings()(_curated())
    assert value[:5] == b"\x00\x00\x00\x00\x2a" and framed_schema_id(value) == 42
    datum = decode(value, parsed_schema("readings"))
    assert str(datum["event_id"]) == EVENT_ID
    assert (datum["ts"], datum["received_at"]) == (NOW - timedelta(seconds=1), NOW)
    assert datum["source"] == "mqtt"
    sensors = datum["sensors"]
    assert sensors["ld2410"]["presence"] is True and sensors["ld2410"]["distance_cm"] == 120
    assert sensors["ld2410"]["moving_energy"] is None
    assert sensors["mq134"] == {"gas_concentration": 12.5, "raw_value": None}
    assert sensors["pir"] is None and sensors["equipment"] is None
    assert sensors["generic"] == {"co2_ppm": 415.0, "door_open": False}
    assert sensors["other"] == {"soil": {"moisture": 0.3}}
    metadata = datum["metadata"]
    assert metadata == {"floor": 2, "ok": True, "ratio": 0.5, "wing": "east"}
    assert type(metadata["floor"]) is int and type(metadata["ok"]) is bool
    assert json.loads(datum["location"]) == {"building": "A"}
    assert (datum["device_name"], datum["profile"], datum["tags"]) == (
        "Lobby",
        "esp32",
        ["lobby", "ground"],
    )
    assert (datum["processed_at"], datum["lag_ms"], datum["replayed"]) == (NOW, 12.5, 1)


def test_reading_without_enrichment_or_metadata_encodes_nulls() -> None:
    bare = _curated(
        metadata=None, device_name=None, profile=None, location=None, tags=[], processed_at=None
    )
    datum = decode(AvroEncoder("readings", 1).readings()(bare), parsed_schema("readings"))
    assert datum["metadata"] is None and datum["location"] is None and datum["tags"] == []
    assert datum["device_name"] is None and datum["processed_at"] is None


def test_a_value_outside_the_schema_raises() -> None:
    broken = _curated(sensors=msgspec.Raw(b'{"mq134":{"gas_concentration":"high"}}'))
    with pytest.raises((ValueError, TypeError)):
        AvroEncoder("readings", 1).readings()(broken)


def test_status_rollup_and_dead_letter_round_trip() -> None:
    change = StatusChange(
        device_id="d1", seq=3, online=True, reason="reading", changed_at=NOW, last_seen=NOW,
        timeout_s=300,
    )  # fmt: skip
    rollup = Rollup(
        device_id="d1", field="mq134.gas_concentration", window_start=NOW.replace(microsecond=0),
        window_end=NOW.replace(microsecond=0) + timedelta(minutes=1), count=3, min=1.0,
        max=3.0, sum=6.0, mean=2.0,
    )  # fmt: skip
    letter = DeadLetter(
        stage="validate", reason="bad", errors=[FieldError(("items", 3, "x"), "no", "missing")],
        error_type="ValidationFailure", source_topic="fleet.raw.v1", partition=1, offset=7,
        key=None, original=b"\x00raw", failed_at=NOW, event_id=EVENT_ID, item=3,
    )  # fmt: skip
    cases: list[tuple[Any, dict[str, Any]]] = [
        ("device-status", status_datum(change)),
        ("readings-1m", rollup_datum(rollup)),
        ("deadletter", dead_letter_datum(letter)),
    ]
    for contract, datum in cases:
        decoded = decode(AvroEncoder(contract, 9).encode(datum), parsed_schema(contract))
        assert decoded.keys() == datum.keys(), contract
    status = decode(
        AvroEncoder("device-status", 9).encode(status_datum(change)), parsed_schema("device-status")
    )
    assert (status["seq"], status["online"], status["last_seen"]) == (3, True, NOW)
    dead = decode(
        AvroEncoder("deadletter", 9).encode(dead_letter_datum(letter)), parsed_schema("deadletter")
    )
    assert dead["errors"] == [{"loc": ["items", "3", "x"], "message": "no", "type": "missing"}]
    assert dead["original"] == b"\x00raw" and str(dead["event_id"]) == EVENT_ID


def test_framing_is_checked() -> None:
    with pytest.raises(FramingError):
        framed_schema_id(b'{"json": true}')
    with pytest.raises(FramingError):
        framed_schema_id(b"\x00\x00")
    with pytest.raises(ValueError, match="schema id"):
        AvroEncoder("readings", -1)
    with pytest.raises(ValueError, match="cannot encode readings"):
        AvroEncoder("alerts", 1).readings()


# --- the validate step with the Avro encoder ---------------------------------------------

TOPICS = TopicSettings()


class _Message:
    def __init__(self, value: bytes, offset: int = 0) -> None:
        self.topic, self.partition, self.offset = TOPICS.raw, 0, offset
        self.key: bytes | None = b"d"
        self.value: bytes | None = value
        self.timestamp = NOW.timestamp()
        self.headers: Any = []


def test_validate_writes_avro_readings_and_json_curated_envelopes() -> None:
    encoder = AvroEncoder("readings", 5)
    validation = Validation(TOPICS, 3, 512 * 1024, readings_encoder=encoder.readings())
    events = [raw_event(reading("esp32-7", n), received_at=NOW) for n in range(3)]
    message = _Message(raw_envelope(encode_raw_event(event) for event in events))
    outputs = validation.run([message], NOW)
    readings = outputs.records(TOPICS.readings)
    assert len(readings) == 3
    for record, event in zip(readings, events, strict=True):
        datum = decode(record.value or b"", parsed_schema("readings"))
        assert record.key == b"esp32-7" and str(datum["event_id"]) == event.event_id
    (envelope,) = outputs.records(TOPICS.curated)
    assert (envelope.value or b"").startswith(b'{"format":"curated-envelope/1"')


def test_an_encoder_failure_is_a_dead_letter_not_a_crash() -> None:
    def failing(curated: CuratedReading) -> bytes:
        raise ValueError(f"cannot encode {curated.event_id}")

    validation = Validation(TOPICS, 3, 512 * 1024, readings_encoder=failing)
    event = raw_event(reading("esp32-7"), received_at=NOW)
    outputs = validation.run([_Message(raw_envelope([encode_raw_event(event)]))], NOW)
    assert outputs.records(TOPICS.readings) == [] and outputs.records(TOPICS.curated) == []
    (letter,) = outputs.records(TOPICS.deadletter)
    assert b"cannot encode" in (letter.value or b"")


def test_the_fast_readings_path_writes_the_bytes_fastavro_writes() -> None:
    """``readings()`` (generated writer, integer timestamps) must write exactly what fastavro
    writes with the registered schema."""
    from bench.avro_encode import curated_mix

    encoder = AvroEncoder("readings", 77)
    fast = encoder.readings()
    samples = [*curated_mix(300), _curated(), _curated(processed_at=None, metadata=None)]
    samples += [
        _curated(ts=datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        _curated(device_name="Küche 🌡", tags=[], location=[1, "x"], lag_ms=None, replayed=0),
        _curated(metadata={"big": 2**63 - 1, "neg": -(2**63), "s": "", "f": -0.0}),
        _curated(
            sensors=msgspec.Raw(
                b'{"equipment":{"temperature":-50.0,"rpm":100000},"pir":{"motion_detected":true}}'
            )
        ),
    ]
    for curated in samples:
        assert fast(curated) == encoder.encode(reading_datum(curated)), curated.event_id

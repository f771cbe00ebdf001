"""The readings hot path (``AvroEncoder.readings``) writes fastavro's bytes, value for value."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from schemas.avro_codec import (
    AvroEncoder,
    _readings_writer,
    _ReadingWriter,
    reading_datum,
)
from schemas.events import CuratedReading, Enrichment, validate_event_with_sensors
from schemas.readings import Sensors
from tests.clock import now
from tests.factories import raw_event

NOW = now().replace(microsecond=123456)
EDGE_INTS = [0, 1, -1, 63, 64, -64, -65, 4095, 4096, 8191, 8192, -8193, 2**31 - 1, -(2**31)]
EDGE_LONGS = [*EDGE_INTS, 2**40, -(2**40), 2**62, 2**63 - 1, -(2**63)]
"""Avro ints (sensor fields) are 32-bit: fastavro refuses more; metadata values are longs."""
EDGE_FLOATS = [0.0, -0.0, 1.5, -50.0, 1e-300, 1e300, 123456.789, 5.0]


def _maybe(rng: random.Random, value: Any) -> Any:
    return None if rng.random() < 0.3 else value


def _sensors(rng: random.Random) -> dict[str, Any]:
    sensors: dict[str, Any] = {}
    if rng.random() < 0.6:
        sensors["ld2410"] = {
            "presence": rng.random() < 0.5,
            "moving_target": _maybe(rng, rng.random() < 0.5),
            "stationary_target": _maybe(rng, rng.random() < 0.5),
            "distance_cm": _maybe(rng, rng.choice(EDGE_INTS)),
            "moving_energy": _maybe(rng, rng.randint(0, 100)),
            "stationary_energy": _maybe(rng, rng.choice(EDGE_INTS)),
        }
        if rng.random() < 0.5:
            sensors["ld2410"]["detection_distance_cm"] = rng.choice(EDGE_INTS)
    if rng.random() < 0.5:
        sensors["pir"] = {"motion_detected": rng.random() < 0.5}
    if rng.random() < 0.5:
        sensors["mq134"] = {
            "gas_concentration": rng.choice(EDGE_FLOATS),
            "raw_value": _maybe(rng, rng.choice(EDGE_INTS)),
        }
    if rng.random() < 0.4:
        names = ("temperature", "vibration", "pressure", "humidity", "rpm", "power_kw")
        sensors["equipment"] = {
            name: rng.choice(EDGE_FLOATS) for name in names if rng.random() < 0.6
        }
    if rng.random() < 0.3:
        sensors["generic"] = {
            f"m{n}": rng.choice([True, False, *EDGE_FLOATS]) for n in range(rng.randint(0, 4))
        }
    return sensors


def _metadata(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.3:
        return None
    values: list[Any] = [True, False, "", "east", "Küche 🌡", "x" * 100, *EDGE_LONGS]
    values += EDGE_FLOATS
    return {f"k{n}": rng.choice(values) for n in range(rng.randint(0, 5))}


def _moment(rng: random.Random) -> datetime:
    moments = [
        NOW,
        NOW - timedelta(microseconds=rng.randint(0, 10**12)),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2150, 1, 1, tzinfo=UTC),
        NOW.astimezone(timezone(timedelta(hours=5, minutes=30))),
    ]
    return rng.choice(moments)


def _reading(rng: random.Random) -> CuratedReading:
    location = rng.choice([None, {"building": "A", "floor": 2}, [1, "x", None], "hall", 3.5])
    return CuratedReading(
        schema_version=rng.choice([1, 1, 2, 63, 64, 300]),
        event_id=f"019ab000-0000-7000-8000-{rng.randrange(16**12):012x}",
        device_id=rng.choice(["esp32-1", "machine-7", "d" * 128, "ü-device"]),
        ts=_moment(rng),
        received_at=_moment(rng),
        source=rng.choice(["http", "mqtt", "upload", "kafka"]),
        sensors=msgspec.Raw(msgspec.json.encode(_sensors(rng))),
        metadata=_metadata(rng),
        device_name=rng.choice([None, "Lobby", "", "Küche 🌡"]),
        profile=rng.choice([None, "esp32"]),
        location=location,
        tags=rng.choice([[], ["lobby"], ["a", "b" * 70, ""]]),
        processed_at=rng.choice([None, NOW, _moment(rng)]),
        lag_ms=rng.choice([None, 0.0, 12.5, -3.25, 1e12]),
        replayed=rng.choice([0, 1, 63, 64, 1000]),
    )


def test_generated_readings_are_written_as_fastavro_writes_them() -> None:
    rng = random.Random(7)
    encoder = AvroEncoder("readings", 77)
    fast = encoder.readings()
    for _ in range(3000):
        curated = _reading(rng)
        assert _ReadingWriter().value(curated) is not None, "took the general path"
        assert fast(curated) == encoder.encode(reading_datum(curated)), curated


def test_repeated_devices_and_timestamps_keep_their_bytes() -> None:
    """Kept encodings (per device, last timestamp) must follow changed values."""
    rng = random.Random(11)
    encoder = AvroEncoder("readings", 1)
    fast = encoder.readings()
    base = _reading(rng)
    changes: list[dict[str, Any]] = [
        {},
        {"tags": ["other"]},
        {"location": {"building": "B"}},
        {"location": {"building": "B", "floor": 2.0}},
        {"device_name": "Renamed"},
        {"profile": None},
        {"ts": NOW + timedelta(microseconds=1)},
        {"received_at": NOW.astimezone(timezone(timedelta(hours=-3)))},
        {"processed_at": NOW - timedelta(days=400)},
        {},
    ]
    for change in changes:
        curated = msgspec.structs.replace(base, **change)
        assert fast(curated) == encoder.encode(reading_datum(curated)), change


@pytest.mark.parametrize(
    "sensors",
    [
        b'{"soil":{"moisture":0.3}}',
        b'{"ld2410":null}',
        b'{"ld2410":{"presence":true,"distance_cm":1.0}}',
        b'{"generic":{"co2":415},"other":{"x":1}}',
        b'{"equipment":{"temperature":true}}',
    ],
)
def test_sensors_outside_the_fast_path_take_the_general_one(sensors: bytes) -> None:
    """Those go through the datum and the generated writer, as every reading did before."""
    curated = _reading(random.Random(3))
    curated = msgspec.structs.replace(curated, sensors=msgspec.Raw(sensors))
    assert _ReadingWriter().value(curated) is None
    encoder = AvroEncoder("readings", 1)
    try:
        general = bytearray()
        _readings_writer()(reading_datum(curated, micros=True), general)
    except (ValueError, TypeError, AttributeError, KeyError):
        with pytest.raises(ValueError):
            encoder.readings()(curated)
        return
    assert encoder.readings()(curated)[5:] == bytes(general)


def test_a_value_of_the_wrong_type_raises_value_error() -> None:
    curated = _reading(random.Random(5))
    encoder = AvroEncoder("readings", 1).readings()
    for change in ({"replayed": 1.5}, {"metadata": {"k": [1]}}, {"tags": [1]}):
        broken = msgspec.structs.replace(curated, **change)
        with pytest.raises(ValueError, match="does not fit the readings schema"):
            encoder(broken)


# --- the validated sensors, read instead of decoded ---------------------------------------


def _valid_ld2410(rng: random.Random) -> dict[str, Any]:
    ld2410: dict[str, Any] = {"presence": rng.random() < 0.5}
    for name in ("moving_target", "stationary_target"):
        if rng.random() < 0.6:
            ld2410[name] = rng.random() < 0.5
    ints = (("distance_cm", 800), ("moving_energy", 100), ("detection_distance_cm", 800))
    for name, top in ints:
        if rng.random() < 0.6:
            ld2410[name] = rng.choice([0, 63, 64, top, rng.randint(0, top)])
    return ld2410


def _valid_equipment(rng: random.Random) -> dict[str, Any]:
    names = ("temperature", "vibration", "pressure", "humidity", "rpm", "power_kw")
    kept = rng.sample(names, rng.randint(1, 6)) if rng.random() < 0.5 else names
    return {name: rng.choice([0, 1.5, 99.9]) for name in kept}


def _valid_sensors(rng: random.Random) -> dict[str, Any]:
    """Random sensors within the catalogue's rules (the validator must accept them)."""
    sensors: dict[str, Any] = {}
    if rng.random() < 0.6:
        sensors["ld2410"] = _valid_ld2410(rng)
    if rng.random() < 0.5:
        sensors["pir"] = {"motion_detected": rng.random() < 0.5}
    if rng.random() < 0.5:
        sensors["mq134"] = {"gas_concentration": rng.choice([0, 0.5, 10_000, 27.75])}
        if rng.random() < 0.5:
            sensors["mq134"]["raw_value"] = rng.choice([0, 64, 4095])
    if rng.random() < 0.4:
        sensors["equipment"] = _valid_equipment(rng)
    if rng.random() < 0.3 or not sensors:
        sensors["generic"] = {"co2_ppm": 415, "door_open": rng.random() < 0.5, "t": -1e300}
    return sensors


def test_validated_sensors_give_the_bytes_of_decoding_them_and_of_fastavro() -> None:
    rng = random.Random(13)
    encoder = AvroEncoder("readings", 9)
    readings = encoder.readings()
    enrichment = Enrichment(device_name="Lobby", profile="esp32", location={"f": 2}, tags=["a"])
    for n in range(2000):
        body = {
            "device_id": f"esp32-{n % 7}",
            "timestamp": (NOW - timedelta(seconds=rng.randint(0, 10**6))).isoformat(),
            "sensors": _valid_sensors(rng),
            "metadata": _metadata(rng),
        }
        event = raw_event(body, received_at=NOW)
        curated, sensors = validate_event_with_sensors(
            event, now=NOW, enrichment=enrichment if n % 2 else None
        )
        assert type(sensors) is Sensors
        value = readings.with_sensors(curated, sensors)
        assert value == readings(curated) == encoder.encode(reading_datum(curated)), body


def test_sensors_read_by_the_generic_rules_are_decoded_from_the_json() -> None:
    body = {
        "device_id": "esp32-1",
        "sensors": {"soil": {"moisture": 0.3}, "pir": {"motion_detected": True}},
    }
    curated, sensors = validate_event_with_sensors(
        raw_event(body, received_at=NOW), now=NOW, unknown_sensors="generic"
    )
    assert sensors is None
    encoder = AvroEncoder("readings", 9)
    assert encoder.readings().with_sensors(curated, sensors) == encoder.encode(
        reading_datum(curated)
    )

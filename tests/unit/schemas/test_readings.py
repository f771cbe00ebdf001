"""The reading contract and the shared validator (schemas.readings/validation/errors)."""

from __future__ import annotations

import json
import pickle
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from schemas.errors import (
    BatchValidationFailure,
    FieldError,
    FleetError,
    ValidationFailure,
    field_error_from_message,
    format_loc,
)
from schemas.readings import Equipment, Ld2410, Mq134, Pir, Reading, Sensors
from schemas.validation import (
    decode_reading,
    decode_readings,
    decode_readings_with_raw,
    validate_reading_obj,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid seed-002 style reading; keyword arguments replace top-level keys."""
    body: dict[str, Any] = {
        "device_id": "esp32-lobby-01",
        "timestamp": "2026-11-25T11:59:30Z",
        "sensors": {
            "ld2410": {
                "presence": True,
                "moving_target": True,
                "stationary_target": False,
                "distance_cm": 150,
                "moving_energy": 45,
                "stationary_energy": 0,
                "detection_distance_cm": 600,
            },
            "pir": {"motion_detected": True},
            "mq134": {"gas_concentration": 12.5, "raw_value": 1024, "unit": "ppm"},
        },
    }
    body.update(overrides)
    return body


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def failure_of(data: bytes | str, **kwargs: Any) -> ValidationFailure:
    with pytest.raises(ValidationFailure) as info:
        decode_reading(data, now=kwargs.pop("now", NOW), **kwargs)
    return info.value


# --- valid readings ----------------------------------------------------------------------------


def test_canonical_payload_decodes_every_sensor() -> None:
    reading = decode_reading(encode(payload()), now=NOW)
    assert reading.device_id == "esp32-lobby-01"
    assert reading.timestamp == datetime(2026, 11, 25, 11, 59, 30, tzinfo=UTC)
    assert reading.sensors.ld2410 == Ld2410(
        presence=True,
        moving_target=True,
        stationary_target=False,
        distance_cm=150,
        moving_energy=45,
        stationary_energy=0,
        detection_distance_cm=600,
    )
    assert reading.sensors.pir == Pir(motion_detected=True)
    assert reading.sensors.mq134 == Mq134(gas_concentration=12.5, raw_value=1024)
    assert reading.sensors.equipment is None


@pytest.mark.parametrize(
    ("sensors", "expected"),
    [
        ({"ld2410": {"presence": False}}, Sensors(ld2410=Ld2410(presence=False))),
        ({"pir": {"motion_detected": False}}, Sensors(pir=Pir(motion_detected=False))),
        ({"mq134": {"gas_concentration": 0}}, Sensors(mq134=Mq134(gas_concentration=0.0))),
        (
            {"mq134": {"gas_concentration": 10000, "raw_value": 4095}},
            Sensors(mq134=Mq134(gas_concentration=10000.0, raw_value=4095)),
        ),
        (
            {"equipment": {"temperature": -50, "vibration": 2.5, "rpm": 1450}},
            Sensors(equipment=Equipment(temperature=-50.0, vibration=2.5, rpm=1450.0)),
        ),
        ({"equipment": {"power_kw": 0}}, Sensors(equipment=Equipment(power_kw=0.0))),
    ],
)
def test_each_sensor_alone_is_a_valid_reading(sensors: dict[str, Any], expected: Sensors) -> None:
    reading = decode_reading(encode(payload(sensors=sensors)), now=NOW)
    assert reading.sensors == expected


def test_seed_001_equipment_reading_with_industrial_id() -> None:
    body = payload(
        device_id="PUMP-A1-001",
        sensors={
            "equipment": {
                "temperature": 200,
                "vibration": 4.2,
                "pressure": 6.1,
                "humidity": 100,
                "rpm": 100000,
                "power_kw": 15.5,
            }
        },
    )
    reading = decode_reading(encode(body), now=NOW)
    assert reading.device_id == "PUMP-A1-001"
    assert reading.sensors.equipment == Equipment(
        temperature=200.0, vibration=4.2, pressure=6.1, humidity=100.0, rpm=100000.0, power_kw=15.5
    )


def test_optional_fields_timestamp_event_id_and_metadata() -> None:
    body = payload(
        timestamp=None,
        event_id="0194C0DE-AAAA-7BBB-8CCC-DDDDEEEEFFFF",
        metadata={"site": "lobby", "floor": 2, "gain": 0.5, "calibrated": True},
    )
    reading = decode_reading(encode(body), now=NOW)
    assert reading.timestamp is None
    # Upper-case UUIDs are normalised so the same id always dedupes.
    assert reading.event_id == "0194c0de-aaaa-7bbb-8ccc-ddddeeeeffff"
    assert reading.metadata == {"site": "lobby", "floor": 2, "gain": 0.5, "calibrated": True}


def test_timestamp_with_offset_is_kept_timezone_aware() -> None:
    reading = decode_reading(encode(payload(timestamp="2026-11-25T13:00:00+02:00")), now=NOW)
    assert reading.timestamp is not None
    assert reading.timestamp.utcoffset() == timedelta(hours=2)
    assert reading.timestamp == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", [str, bytearray, memoryview])
def test_str_and_buffer_inputs_are_accepted(kind: Any) -> None:
    text = json.dumps(payload())
    data = kind(text) if kind is str else kind(text.encode())
    assert decode_reading(data, now=NOW).device_id == "esp32-lobby-01"


def test_omit_defaults_drops_none_fields_when_encoding() -> None:
    reading = decode_reading(encode(payload(sensors={"pir": {"motion_detected": True}})), now=NOW)
    encoded = json.loads(msgspec.json.encode(reading))
    assert encoded == {
        "device_id": "esp32-lobby-01",
        "sensors": {"pir": {"motion_detected": True}},
        "timestamp": "2026-11-25T11:59:30Z",
    }


# --- invalid readings name the field -----------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], tuple[str | int, ...], str]] = [
    (
        "wrong type",
        payload(sensors={"pir": {"motion_detected": "yes"}}),
        ("sensors", "pir", "motion_detected"),
        "type",
    ),
    (
        "int given a float",
        payload(sensors={"ld2410": {"presence": True, "distance_cm": 1.5}}),
        ("sensors", "ld2410", "distance_cm"),
        "type",
    ),
    (
        "negative gas",
        payload(sensors={"mq134": {"gas_concentration": -1}}),
        ("sensors", "mq134", "gas_concentration"),
        "range",
    ),
    (
        "gas above span",
        payload(sensors={"mq134": {"gas_concentration": 10000.5}}),
        ("sensors", "mq134", "gas_concentration"),
        "range",
    ),
    (
        "adc above 12 bit",
        payload(sensors={"mq134": {"gas_concentration": 1, "raw_value": 4096}}),
        ("sensors", "mq134", "raw_value"),
        "range",
    ),
    (
        "wrong unit",
        payload(sensors={"mq134": {"gas_concentration": 1, "unit": "ppb"}}),
        ("sensors", "mq134", "unit"),
        "enum",
    ),
    (
        "energy above 100",
        payload(sensors={"ld2410": {"presence": True, "moving_energy": 101}}),
        ("sensors", "ld2410", "moving_energy"),
        "range",
    ),
    (
        "distance beyond 8 m",
        payload(sensors={"ld2410": {"presence": True, "detection_distance_cm": 801}}),
        ("sensors", "ld2410", "detection_distance_cm"),
        "range",
    ),
    (
        "missing presence",
        payload(sensors={"ld2410": {"distance_cm": 10}}),
        ("sensors", "ld2410", "presence"),
        "missing",
    ),
    (
        "too hot",
        payload(sensors={"equipment": {"temperature": 200.1}}),
        ("sensors", "equipment", "temperature"),
        "range",
    ),
    (
        "humidity above 100",
        payload(sensors={"equipment": {"humidity": 101}}),
        ("sensors", "equipment", "humidity"),
        "range",
    ),
    (
        "negative power",
        payload(sensors={"equipment": {"power_kw": -0.1}}),
        ("sensors", "equipment", "power_kw"),
        "range",
    ),
    (
        "empty equipment",
        payload(sensors={"equipment": {}}),
        ("sensors", "equipment"),
        "value",
    ),
    (
        "unknown sensor",
        payload(sensors={"bme280": {"t": 1}}),
        ("sensors", "bme280"),
        "unknown_field",
    ),
    (
        "unknown sensor field",
        payload(sensors={"pir": {"motion_detected": True, "sensitivity": 3}}),
        ("sensors", "pir", "sensitivity"),
        "unknown_field",
    ),
    ("unknown top-level field", payload(firmware="1.2"), ("firmware",), "unknown_field"),
    ("empty sensors", payload(sensors={}), ("sensors",), "value"),
    ("sensors not an object", payload(sensors=[1]), ("sensors",), "type"),
    ("bad device_id", payload(device_id="-leading-dash"), ("device_id",), "pattern"),
    ("empty device_id", payload(device_id=""), ("device_id",), "pattern"),
    ("device_id too long", payload(device_id="a" * 129), ("device_id",), "pattern"),
    ("device_id with newline", payload(device_id="esp32\n"), ("device_id",), "pattern"),
    ("device_id not a string", payload(device_id=7), ("device_id",), "type"),
    ("naive timestamp", payload(timestamp="2026-11-25T11:00:00"), ("timestamp",), "timezone"),
    ("garbage timestamp", payload(timestamp="yesterday"), ("timestamp",), "datetime"),
    (
        "unsynced clock",
        payload(timestamp="1970-01-01T00:00:05Z"),
        ("timestamp",),
        "range",
    ),
    ("bad event_id", payload(event_id="not-a-uuid"), ("event_id",), "pattern"),
    ("metadata value list", payload(metadata={"tags": ["a"]}), ("metadata", "*"), "type"),
    ("metadata key empty", payload(metadata={"": 1}), ("metadata",), "length"),
    (
        "metadata too many tags",
        payload(metadata={f"k{i}": i for i in range(33)}),
        ("metadata",),
        "length",
    ),
]


@pytest.mark.parametrize(
    ("body", "loc", "kind"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_reading_names_the_field(
    body: dict[str, Any], loc: tuple[str | int, ...], kind: str
) -> None:
    failure = failure_of(encode(body))
    assert [(e.loc, e.type) for e in failure.errors] == [(loc, kind)]
    assert failure.reason.startswith(format_loc(loc))
    assert "\n" not in failure.reason


def test_missing_sensors_is_reported_as_missing() -> None:
    body = payload()
    del body["sensors"]
    failure = failure_of(encode(body))
    assert failure.errors == [FieldError(("sensors",), "missing required field", "missing")]
    assert failure.reason == "sensors: missing required field"


def test_range_reason_quotes_the_bound() -> None:
    failure = failure_of(encode(payload(sensors={"mq134": {"gas_concentration": -3}})))
    assert failure.reason == "sensors.mq134.gas_concentration: Expected `float` >= 0.0"


def test_unknown_sensor_message_lists_supported_types() -> None:
    failure = failure_of(encode(payload(sensors={"dht22": {}})))
    assert failure.reason.startswith("sensors.dht22: unknown sensor type")
    assert "ld2410" in failure.reason
    assert "mq134" in failure.reason


def test_device_id_error_is_plain_language_not_a_regex() -> None:
    failure = failure_of(encode(payload(device_id="bad id")))
    assert "regex" not in failure.reason
    assert "letter or digit" in failure.reason


# --- clock skew --------------------------------------------------------------------------------


def test_future_timestamp_within_skew_is_accepted() -> None:
    body = payload(timestamp="2026-11-26T12:00:00Z")  # exactly 1 day ahead
    assert decode_reading(encode(body), now=NOW).timestamp == NOW + timedelta(days=1)


def test_future_timestamp_beyond_skew_is_rejected_with_clear_message() -> None:
    failure = failure_of(encode(payload(timestamp="2026-11-26T12:00:01Z")))
    assert failure.errors[0].loc == ("timestamp",)
    assert failure.errors[0].type == "future_timestamp"
    assert "ahead of server time" in failure.reason
    assert "1d 1s" in failure.reason


def test_skew_limit_is_a_parameter() -> None:
    data = encode(payload(timestamp="2026-11-25T12:05:00Z"))
    assert decode_reading(data, now=NOW).timestamp is not None
    failure = failure_of(data, max_future=timedelta(minutes=1))
    assert failure.errors[0].type == "future_timestamp"


def test_future_check_compares_instants_across_offsets() -> None:
    # 13:30+02:00 is 11:30Z: in the past despite the larger wall-clock value.
    reading = decode_reading(
        encode(payload(timestamp="2026-11-26T13:30:00+02:00")), now=NOW + timedelta(hours=1)
    )
    assert reading.timestamp == datetime(2026, 11, 26, 11, 30, tzinfo=UTC)


def test_extreme_timestamp_offsets_fail_cleanly() -> None:
    failure = failure_of(encode(payload(timestamp="0001-01-01T00:00:00+01:00")))
    assert failure.errors[0].loc == ("timestamp",)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_reading(encode(payload()), now=datetime(2026, 11, 25, 12))


# --- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"{not json", "json"),
        (b"", "json"),
        (b'{"device_id": "a"', "json"),
        (b'{"device_id":"a","sensors":{"pir":{"motion_detected":true}}} x', "json"),
        (b'{"device_id":"a","sensors":{"mq134":{"gas_concentration":NaN}}}', "json"),
        (b'{"device_id":"a","sensors":{"mq134":{"gas_concentration":Infinity}}}', "json"),
        (b'{"device_id":"\xff\xfe","sensors":{"pir":{"motion_detected":true}}}', "encoding"),
        (b"\xff\xfe\x00{", "json"),
        (b'{"device_id":"a\\ud800","sensors":{"pir":{"motion_detected":true}}}', "json"),
        ('{"device_id":"a\ud800","sensors":{"pir":{"motion_detected":true}}}', "encoding"),
        (b"[" * 50_000, "type"),
        (b"[]", "type"),
        (b"null", "type"),
        (b'"reading"', "type"),
        (b"42", "type"),
    ],
)
def test_malformed_input_raises_only_validation_failure(data: bytes | str, kind: str) -> None:
    failure = failure_of(data)
    assert failure.errors[0].loc == ()
    assert failure.errors[0].type == kind
    assert failure.reason


@pytest.mark.parametrize(
    ("number", "field"),
    [
        (b"1e999", "gas_concentration"),
        (b"123456789012345678901234567890", "raw_value"),
        (b"-1e999", "gas_concentration"),
    ],
)
def test_huge_numbers_are_out_of_range(number: bytes, field: str) -> None:
    value = b'{"gas_concentration":1,"raw_value":1}'.replace(
        b'"' + field.encode() + b'":1', b'"' + field.encode() + b'":' + number
    )
    data = b'{"device_id":"a","sensors":{"mq134":' + value + b"}}"
    failure = failure_of(data)
    assert failure.errors[0].loc == ("sensors", "mq134", field)
    assert failure.errors[0].type == "range"


def test_huge_metadata_int_is_rejected() -> None:
    failure = failure_of(encode(payload(metadata={"n": 2**64})))
    assert failure.errors[0].loc == ("metadata", "*")


def test_huge_unknown_key_is_clipped_in_loc_and_reason() -> None:
    failure = failure_of(encode(payload(**{"x" * 100_000: 1})))
    assert failure.errors[0].type == "unknown_field"
    assert len(str(failure.errors[0].loc[0])) <= 128
    assert len(failure.reason) <= 512


# --- batches -----------------------------------------------------------------------------------


def test_decode_readings_accepts_a_single_object() -> None:
    readings = decode_readings(encode(payload()), now=NOW, max_items=10)
    assert [r.device_id for r in readings] == ["esp32-lobby-01"]


def test_decode_readings_accepts_an_array() -> None:
    items = [payload(device_id=f"esp32-{i}") for i in range(3)]
    readings = decode_readings(b"  \n" + encode(items), now=NOW, max_items=3)
    assert [r.device_id for r in readings] == ["esp32-0", "esp32-1", "esp32-2"]


def test_batch_with_two_bad_items_of_three_reports_both_indexes() -> None:
    items = [
        payload(),
        payload(sensors={"mq134": {"gas_concentration": -3}}),
        payload(sensors={"pir": {}}),
    ]
    with pytest.raises(BatchValidationFailure) as info:
        decode_readings(encode(items), now=NOW, max_items=10)
    failure = info.value
    assert failure.failed_indexes == [1, 2]
    assert [e.loc for e in failure.errors] == [
        (1, "sensors", "mq134", "gas_concentration"),
        (2, "sensors", "pir", "motion_detected"),
    ]
    assert failure.reason.startswith("2 of 3 readings invalid; first: [1].sensors.mq134")


def test_single_invalid_object_is_not_a_batch_failure() -> None:
    with pytest.raises(ValidationFailure) as info:
        decode_readings(encode(payload(sensors={})), now=NOW, max_items=10)
    assert not isinstance(info.value, BatchValidationFailure)
    assert info.value.errors[0].loc == ("sensors",)


def test_batch_item_that_is_not_an_object_is_reported_by_index() -> None:
    with pytest.raises(BatchValidationFailure) as info:
        decode_readings(encode([payload(), "oops"]), now=NOW, max_items=10)
    assert info.value.errors == [FieldError((1,), "Expected `object`, got `str`", "type")]


def test_empty_array_is_an_error() -> None:
    with pytest.raises(ValidationFailure) as info:
        decode_readings(b"[]", now=NOW, max_items=10)
    assert info.value.errors[0].type == "length"
    assert "empty" in info.value.reason


def test_too_many_items_is_an_error() -> None:
    with pytest.raises(ValidationFailure) as info:
        decode_readings(encode([payload()] * 4), now=NOW, max_items=3)
    assert info.value.errors[0].type == "length"
    assert "at most 3" in info.value.reason


def test_malformed_array_is_a_json_error() -> None:
    with pytest.raises(ValidationFailure) as info:
        decode_readings(b'[{"device_id": "a"},', now=NOW, max_items=3)
    assert info.value.errors[0].type == "json"


def test_with_raw_returns_each_items_exact_bytes() -> None:
    first = b'{ "device_id" : "a", "sensors": {"pir": {"motion_detected": true}} }'
    second = (
        b'{"device_id":"b","sensors":{"pir":{"motion_detected":false}},"metadata":{"x":"\\u00e9"}}'
    )
    items = decode_readings_with_raw(b"[" + first + b" ,\n" + second + b"]", now=NOW, max_items=2)
    assert [bytes(raw) for _, raw in items] == [first, second]
    assert [reading.device_id for reading, _ in items] == ["a", "b"]


def test_with_raw_single_object_returns_whole_body() -> None:
    body = encode(payload())
    [(reading, raw)] = decode_readings_with_raw(body, now=NOW, max_items=1)
    assert bytes(raw) == body
    assert reading.device_id == "esp32-lobby-01"


# --- already-decoded objects -------------------------------------------------------------------


def test_validate_reading_obj_accepts_dicts_with_datetime_objects() -> None:
    obj = payload(timestamp=datetime(2026, 11, 25, 11, 0, tzinfo=timezone(timedelta(hours=-5))))
    reading = validate_reading_obj(obj, now=NOW + timedelta(hours=5))
    assert reading.timestamp == datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("obj", "loc"),
    [
        (payload(sensors={"mq134": {"gas_concentration": float("nan")}}), ("sensors", "mq134")),
        (payload(sensors={"equipment": {"power_kw": float("inf")}}), ("sensors", "equipment")),
        (payload(metadata={"x": float("inf")}), ("metadata", "*")),
        (payload(metadata={1: "x"}), ("metadata",)),
        ([payload()], ()),
        (object(), ()),
        (None, ()),
    ],
)
def test_validate_reading_obj_rejects_bad_objects(obj: Any, loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationFailure) as info:
        validate_reading_obj(obj, now=NOW)
    assert info.value.errors[0].loc[: len(loc)] == loc


def test_validate_reading_obj_rejects_lone_surrogates_in_metadata() -> None:
    # JSON input can never carry them, but a Python str can; they would break encoding later.
    with pytest.raises(ValidationFailure) as info:
        validate_reading_obj(payload(metadata={"note": "a\ud800"}), now=NOW)
    assert info.value.errors[0].loc == ("metadata",)
    assert info.value.errors[0].type == "encoding"


def test_validate_reading_obj_checks_future_timestamps() -> None:
    with pytest.raises(ValidationFailure) as info:
        validate_reading_obj(payload(timestamp=NOW + timedelta(days=2)), now=NOW)
    assert info.value.errors[0].type == "future_timestamp"


# --- error model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Expected `int` <= 100 - at `$.sensors.ld2410.moving_energy`",
            FieldError(("sensors", "ld2410", "moving_energy"), "Expected `int` <= 100", "range"),
        ),
        (
            "Object contains unknown field `foo` - at `$.sensors`",
            FieldError(
                ("sensors", "foo"),
                "unknown sensor type (supported: equipment, generic, ld2410, mq134, pir)",
                "unknown_field",
            ),
        ),
        (
            "Object contains unknown field `foo`",
            FieldError(("foo",), "unknown field", "unknown_field"),
        ),
        (
            "Object missing required field `presence` - at `$[3].sensors.ld2410`",
            FieldError((3, "sensors", "ld2410", "presence"), "missing required field", "missing"),
        ),
        (
            "Expected `str` of length <= 3 - at `key` in `$.metadata`",
            FieldError(("metadata",), "invalid key: Expected `str` of length <= 3", "length"),
        ),
        ("Input data was truncated", FieldError((), "Input data was truncated", "json")),
        ("something new", FieldError((), "something new", "value")),
    ],
)
def test_field_error_from_msgspec_message(text: str, expected: FieldError) -> None:
    assert field_error_from_message(text) == expected


def test_format_loc_renders_indexes_in_brackets() -> None:
    assert (
        format_loc(("sensors", "mq134", "gas_concentration")) == "sensors.mq134.gas_concentration"
    )
    assert format_loc((2, "sensors", "pir")) == "[2].sensors.pir"
    assert format_loc(()) == ""


def test_validation_failure_contract() -> None:
    errors = [FieldError(("a",), "bad\nthing", "value"), FieldError(("b", 0), "worse", "type")]
    failure = ValidationFailure(errors)
    assert isinstance(failure, FleetError)
    assert failure.retriable is False
    assert failure.reason == "a: bad thing (and 1 more error)"
    assert str(failure) == failure.reason
    assert failure.errors_as_builtins()[1] == {"loc": ["b", 0], "message": "worse", "type": "type"}
    with pytest.raises(ValueError, match="at least one"):
        ValidationFailure([])


def test_validation_failures_survive_pickling() -> None:
    failure = BatchValidationFailure([FieldError((1, "x"), "m", "t")], "why", event_id="e")
    clone = pickle.loads(pickle.dumps(failure))  # noqa: S301 - our own bytes
    assert type(clone) is BatchValidationFailure
    assert (clone.errors, clone.reason, clone.event_id) == (failure.errors, "why", "e")


# --- fuzz --------------------------------------------------------------------------------------


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-ish value, biased towards the shapes the validator cares about."""
    choice = rng.randrange(10 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice([0, -1, 1, 800, 801, 4096, 2**63, -(2**70), rng.randint(-999, 9999)])
    if choice == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-308, float("nan"), float("inf"), rng.random()])
    if choice == 4:
        alphabet = 'abcXYZ019-_.:é€\x00\n"\\\ud800'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if choice == 5:
        return rng.choice(["ld2410", "pir", "mq134", "equipment", "2026-11-25T12:00:00Z"])
    if choice in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        "device_id",
        "timestamp",
        "sensors",
        "event_id",
        "metadata",
        "presence",
        "pir",
        "mq134",
        "ld2410",
        "gas_concentration",
        "motion_detected",
        "x",
    ]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def mutate(rng: random.Random, value: Any) -> Any:
    """Replace one random leaf/branch of a valid payload with a random value."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: mutate(rng, value[key])}
    return random_json(rng)


def fuzz_inputs(seed: int, count: int) -> list[bytes | str]:
    rng = random.Random(seed)
    inputs: list[bytes | str] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            inputs.append(rng.randbytes(rng.randrange(64)))
        elif kind == 1:
            inputs.append(json.dumps(random_json(rng)))
        elif kind == 2:
            inputs.append(json.dumps(mutate(rng, payload()), ensure_ascii=rng.random() < 0.5))
        else:
            good = encode(payload())
            cut = rng.randrange(len(good))
            inputs.append(good[:cut] + rng.randbytes(rng.randrange(4)) + good[cut + 1 :])
    return inputs


def test_fuzz_decode_reading_raises_only_validation_failure() -> None:
    outcomes = {"ok": 0, "invalid": 0}
    for data in fuzz_inputs(seed=2002, count=600):
        try:
            decode_reading(data, now=NOW)
            decode_readings(data, now=NOW, max_items=5)
            outcomes["ok"] += 1
        except ValidationFailure as exc:
            assert exc.errors
            assert exc.reason
            assert "\n" not in exc.reason
            outcomes["invalid"] += 1
    # Both branches must be exercised for the fuzz run to mean something.
    assert outcomes["ok"] > 0
    assert outcomes["invalid"] > 300


def test_fuzz_validate_reading_obj_raises_only_validation_failure() -> None:
    rng = random.Random(1001)
    for _ in range(300):
        obj = mutate(rng, payload()) if rng.random() < 0.7 else random_json(rng)
        try:
            reading = validate_reading_obj(obj, now=NOW)
        except ValidationFailure as exc:
            assert exc.errors
        else:
            assert isinstance(reading, Reading)

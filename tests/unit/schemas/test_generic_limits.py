"""The generic rules' bounds (FLEET_GENERIC__*) in the one validator the edges and the worker
share: exactly at a bound passes, one past it is refused naming the sensor or the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from connectors.mqtt.messages import TopicMatcher, decode_message
from schemas.catalogue import GenericLimits
from schemas.errors import FieldError, ValidationFailure
from schemas.events import validate_event_with_sensors
from schemas.settings import GenericSettings
from schemas.validation import decode_reading, decode_readings_with_raw, validate_reading_obj
from tests.factories import raw_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LIMITS = GenericLimits(fields_per_sensor=4, fields_per_reading=6, name_length=8)


def body(sensors: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": "esp32-a", "sensors": sensors}


def fields(count: int, prefix: str = "f") -> dict[str, float]:
    return {f"{prefix}{n}": float(n) for n in range(count)}


def edge_error(sensors: dict[str, Any], limits: GenericLimits = LIMITS) -> FieldError:
    with pytest.raises(ValidationFailure) as caught:
        decode_reading(json.dumps(body(sensors)).encode(), now=NOW, limits=limits)
    (error,) = caught.value.errors
    return error


def worker_error(sensors: dict[str, Any], limits: GenericLimits = LIMITS) -> FieldError:
    with pytest.raises(ValidationFailure) as caught:
        validate_generic(sensors, limits)
    (error,) = caught.value.errors
    return error


def validate_generic(sensors: dict[str, Any], limits: GenericLimits = LIMITS) -> Any:
    event = raw_event(body(sensors), received_at=NOW)
    return validate_event_with_sensors(event, now=NOW, unknown_sensors="generic", limits=limits)


def test_a_generic_sensor_at_its_field_bound_passes_and_one_more_field_is_refused() -> None:
    reading = decode_reading(
        json.dumps(body({"generic": fields(4)})).encode(), now=NOW, limits=LIMITS
    )
    assert len(reading.sensors.generic) == 4
    error = edge_error({"generic": fields(5)})
    assert (error.loc, error.type) == (("sensors", "generic"), "length")
    assert "at most 4 allowed per sensor" in error.message


def test_a_field_name_at_the_length_bound_passes_and_one_character_more_is_refused() -> None:
    decode_reading(json.dumps(body({"generic": {"a" * 8: 1}})).encode(), now=NOW, limits=LIMITS)
    error = edge_error({"generic": {"ok": 1, "b" * 9: 1}})
    assert (error.loc, error.type) == (("sensors", "generic", "b" * 9), "length")


def test_the_contract_bounds_hold_whatever_the_settings_say() -> None:
    loose = GenericLimits(fields_per_sensor=1000, fields_per_reading=1000, name_length=1000)
    assert edge_error({"generic": fields(33)}, loose).loc == ("sensors", "generic")
    assert edge_error({"generic": {"c" * 33: 1}}, loose).loc == ("sensors", "generic")
    with pytest.raises(ValidationError):
        GenericSettings(max_fields_per_sensor=33)
    with pytest.raises(ValidationError):
        GenericSettings(max_name_length=33)


def test_nested_generic_values_are_refused_as_type_errors() -> None:
    """Generic values are scalars: there is no depth to bound, at the edge or in the worker.
    (msgspec does not report which key of a map held the bad value: ``*`` stands for it.)"""
    for nested in ({"b": 1}, [1]):
        error = edge_error({"generic": {"a": nested}})
        assert (error.loc[:2], error.type) == (("sensors", "generic"), "type")
        error = worker_error({"bme280": {"t": nested}})
        assert (error.loc[:3], error.type) == (("payload", "sensors", "bme280"), "type")


def test_unknown_sensor_types_share_the_readings_bound_in_the_worker() -> None:
    """The contract bounds each sensor; only the per-reading bound stops a reading made of
    thousands of unknown sensor types, each within its own bound."""
    at_bound = {"s1": fields(4), "s2": fields(2)}
    curated, _ = validate_generic(at_bound)
    assert msgspec.json.decode(curated.sensors) == at_bound
    error = worker_error({"s1": fields(4), "s2": fields(3)})
    assert (error.loc, error.type) == (("payload", "sensors", "s2", "f2"), "length")
    assert "more than 6 fields" in error.message
    with_generic = worker_error({"generic": fields(4), "s2": fields(3)})
    assert with_generic.loc == ("payload", "sensors", "s2", "f2"), "generic counts too"
    catalogue = {"pir": {"motion_detected": True}, "mq134": {"gas_concentration": 1.0}}
    curated, _ = validate_generic({**catalogue, "s1": fields(4), "s2": fields(2)})
    assert "pir" in msgspec.json.decode(curated.sensors), "catalogue fields do not count"


def test_the_workers_per_sensor_and_name_bounds_apply_to_unknown_sensor_types() -> None:
    assert worker_error({"s1": fields(5)}).loc == ("payload", "sensors", "s1")
    assert worker_error({"s1": {"x" * 9: 1}}).loc == ("payload", "sensors", "s1", "x" * 9)


def test_the_default_bounds_refuse_a_reading_of_thousands_of_unknown_sensor_types() -> None:
    hostile = {f"s{n}": fields(32) for n in range(1000)}
    error = worker_error(hostile, GenericLimits())
    assert error.loc == ("payload", "sensors", "s1", "f16"), "the 49th generic field"
    validate_generic({"s0": fields(32), "s1": fields(16)}, GenericLimits())


def test_every_entry_point_of_the_validator_takes_the_bounds() -> None:
    over = body({"generic": fields(5)})
    for decode in (
        lambda: validate_reading_obj(over, now=NOW, limits=LIMITS),
        lambda: decode_readings_with_raw(
            json.dumps([over]).encode(), now=NOW, max_items=2, limits=LIMITS
        ),
    ):
        with pytest.raises(ValidationFailure) as caught:
            decode()
        assert format(caught.value.errors[-1].loc[-1]) == "generic"


def test_the_mqtt_bridge_dead_letters_a_message_over_a_bound_with_the_reason() -> None:
    matcher = TopicMatcher(["fleet/+/telemetry"])
    payload = json.dumps(body({"generic": fields(5)})).encode()
    options: dict[str, Any] = {"matcher": matcher, "received_at": NOW, "max_items": 10}
    with pytest.raises(ValidationFailure) as caught:
        decode_message(
            "fleet/esp32-a/telemetry", payload, max_bytes=10_000, limits=LIMITS, **options
        )
    assert caught.value.reason.startswith("sensors.generic: 5 fields")
    at_bound = json.dumps(body({"generic": fields(4)})).encode()
    decoded = decode_message(
        "fleet/esp32-a/telemetry", at_bound, max_bytes=10_000, limits=LIMITS, **options
    )
    assert len(decoded.items) == 1


def test_the_settings_give_the_validators_bounds() -> None:
    section = GenericSettings(max_fields_per_sensor=4, max_fields_per_reading=6, max_name_length=8)
    assert section.limits() == LIMITS
    assert GenericSettings().limits() == GenericLimits()

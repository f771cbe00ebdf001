"""The edge's extra rules in the shared validator: control characters and the timestamp window."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from schemas.errors import BatchValidationFailure, ValidationFailure
from schemas.validation import (
    _may_hold_control_characters,
    decode_reading,
    decode_readings_with_raw,
    validate_reading_obj,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WINDOW: dict[str, Any] = {"max_future": timedelta(minutes=5), "max_age": timedelta(days=30)}


def body(**extra: Any) -> dict[str, Any]:
    return {"device_id": "esp32-a", "sensors": {"pir": {"motion_detected": True}}, **extra}


def failure(data: bytes) -> ValidationFailure:
    with pytest.raises(ValidationFailure) as caught:
        decode_reading(data, now=NOW, **WINDOW)
    return caught.value


@pytest.mark.parametrize("char", ["\x00", "\n", "\t", "\x1f", "\x7f", "\x85", "\x9f"])
def test_a_control_character_in_a_metadata_value_is_refused_naming_the_field(char: str) -> None:
    data = json.dumps(body(metadata={"site": "ok", "note": f"a{char}b"})).encode()
    error = failure(data).errors[0]
    assert (error.loc, error.type) == (("metadata", "note"), "control_character")


def test_a_control_character_in_a_metadata_key_is_refused() -> None:
    data = json.dumps(body(metadata={"bad\u0000key": 1})).encode()
    error = failure(data).errors[0]
    assert error.type == "control_character"
    assert error.loc[0] == "metadata"
    assert "\x00" not in str(error.loc)  # the location itself is log-safe


def test_raw_c1_bytes_are_found_too() -> None:
    # Not an escape: the UTF-8 bytes of U+0085 straight in the JSON text.
    data = b'{"device_id":"esp32-a","sensors":{"pir":{"motion_detected":true}},'
    data += b'"metadata":{"k":"x\xc2\x85y"}}'
    assert failure(data).errors[0].loc == ("metadata", "k")


@pytest.mark.parametrize("raw", [b"x\xc2\x85y", b"x\x7fy", b"x\\u0000y", b"\xc3\xa9\xc2\x9f"])
def test_control_characters_in_a_raw_payload_are_found(raw: bytes) -> None:
    """The worker passes ``msgspec.Raw`` payloads: raw DEL and C1 bytes, escapes."""
    data = b'{"device_id":"esp32-a","sensors":{"pir":{"motion_detected":true}},'
    data += b'"metadata":{"k":"' + raw + b'"}}'
    with pytest.raises(ValidationFailure) as caught:
        decode_reading(msgspec.Raw(data), now=NOW)
    assert caught.value.errors[0].loc == ("metadata", "k")


def test_the_control_character_prefilter_answers_as_the_pattern_it_replaced() -> None:
    pattern = re.compile(rb"\\|\x7f|\xc2[\x80-\x9f]")
    pieces = [b"a", b"\\", b"\x7f", b"\xc2", b"\x80", b"\x9f", b"\xa0", b"\xc3", b"{"]
    rng = random.Random(5)
    for _ in range(20_000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert _may_hold_control_characters(data) == (pattern.search(data) is not None), data


def test_escaped_backslashes_and_ordinary_unicode_pass() -> None:
    data = json.dumps(body(metadata={"path": "C:\\new", "name": "Büro 北"})).encode()
    reading = decode_reading(data, now=NOW, **WINDOW)
    assert reading.metadata == {"path": "C:\\new", "name": "Büro 北"}


def test_already_decoded_objects_are_checked_as_well() -> None:
    with pytest.raises(ValidationFailure) as caught:
        validate_reading_obj(body(metadata={"k": "a\x00"}), now=NOW)
    assert caught.value.errors[0].type == "control_character"


def test_timestamps_outside_the_window_are_refused_and_inside_accepted() -> None:
    old = (NOW - timedelta(days=30, seconds=1)).isoformat()
    assert failure(json.dumps(body(timestamp=old)).encode()).errors[0].type == "past_timestamp"
    ahead = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    assert failure(json.dumps(body(timestamp=ahead)).encode()).errors[0].type == (
        "future_timestamp"
    )
    for ts in (NOW - timedelta(days=29, hours=23), NOW + timedelta(minutes=4)):
        data = json.dumps(body(timestamp=ts.isoformat())).encode()
        assert decode_reading(data, now=NOW, **WINDOW).timestamp == ts


def test_without_a_max_age_old_timestamps_still_pass_for_the_worker() -> None:
    old = json.dumps(body(timestamp="2021-01-01T00:00:00Z")).encode()
    assert decode_reading(old, now=NOW).timestamp is not None


def test_a_batch_names_every_bad_item_by_index() -> None:
    items = [body(), body(metadata={"k": "\x00"}), body(), body(timestamp="2001-01-01T00:00:00Z")]
    with pytest.raises(BatchValidationFailure) as caught:
        decode_readings_with_raw(json.dumps(items).encode(), now=NOW, max_items=10, **WINDOW)
    assert caught.value.failed_indexes == [1, 3]


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"device_id":"a","sensors":' + b'{"x":' * 50_000 + b"1" + b"}" * 50_001,
        b'{"device_id":"a","sensors":{"mq134":{"gas_concentration":NaN}}}',
        b'{"device_id":"a","sensors":{"mq134":{"gas_concentration":1e999}}}',
        b'{"device_id":"a","sensors":{"mq134":{"gas_concentration":Infinity}}}',
        b'{"device_id":"' + b"a" * 1_000_000 + b'","sensors":{"pir":{"motion_detected":true}}}',
    ],
    ids=["deep-array", "deep-object", "nan", "overflow", "infinity", "huge-string"],
)
def test_hostile_json_is_a_validation_failure_not_a_crash(data: bytes) -> None:
    with pytest.raises(ValidationFailure):
        decode_readings_with_raw(msgspec.Raw(data), now=NOW, max_items=10, **WINDOW)

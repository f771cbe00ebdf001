"""Tokens, event ids and reading bodies of simulated devices, judged by the edge's own
validator: good readings pass it, bad ones fail it on the field they spoil."""

from __future__ import annotations

import random
import re

import pytest

from cli.simulator.payloads import (
    device_token,
    event_id,
    json_array,
    reading_bytes,
    timestamp,
    wrong_token,
)
from cli.simulator.schedule import Misbehaviour
from schemas.devices import TOKEN_PATTERN
from schemas.errors import ValidationFailure
from schemas.readings import UUID_PATTERN
from schemas.validation import decode_readings_with_raw
from tests.clock import now

DEVICE = "sim-7-0000042"


def _decode(body: bytes) -> list[object]:
    return [r for r, _ in decode_readings_with_raw(body, now=now(), max_items=1000)]


def test_tokens_follow_from_seed_and_device_and_fit_the_registry() -> None:
    token = device_token(7, DEVICE)
    assert token == device_token(7, DEVICE)
    assert token != device_token(8, DEVICE)
    assert token != device_token(7, "sim-7-0000043")
    assert re.match(TOKEN_PATTERN, token)
    assert wrong_token(7, DEVICE) != token
    assert re.match(TOKEN_PATTERN, wrong_token(7, DEVICE))


def test_event_ids_are_uuids_scoped_to_run_device_and_number() -> None:
    ids = {event_id(run, device, n) for run in ("a", "b") for device in ("d1", "d2")
           for n in range(100)}  # fmt: skip
    assert len(ids) == 400
    assert all(re.match(UUID_PATTERN, value) for value in ids)
    assert event_id("a", "d1", 5) == event_id("a", "d1", 5)


def test_timestamp_is_the_skewed_clock_in_rfc3339_utc() -> None:
    start = now()
    stamp = timestamp(start, due_s=1.5, skew_s=-2.0)
    assert stamp.endswith("Z")
    expected = start.timestamp() - 0.5
    (reading,) = _decode(reading_bytes(DEVICE, event_id("r", DEVICE, 0), stamp,
                                       random.Random(1), None))  # fmt: skip
    assert reading.timestamp.timestamp() == pytest.approx(expected, abs=0.001)  # type: ignore[attr-defined]


def test_good_readings_pass_the_edges_validator_with_their_event_id() -> None:
    rng = random.Random(3)
    ts = timestamp(now(), 0.0, 0.0)
    bodies = [reading_bytes(DEVICE, event_id("r", DEVICE, n), ts, rng, None) for n in range(500)]
    readings = _decode(json_array(bodies))
    assert [r.event_id for r in readings] == [event_id("r", DEVICE, n) for n in range(500)]  # type: ignore[attr-defined]
    assert {r.device_id for r in readings} == {DEVICE}  # type: ignore[attr-defined]


def test_out_of_range_readings_fail_on_the_gas_concentration() -> None:
    rng = random.Random(4)
    ts = timestamp(now(), 0.0, 0.0)
    for n in range(50):
        body = reading_bytes(DEVICE, event_id("r", DEVICE, n), ts, rng, Misbehaviour.OUT_OF_RANGE)
        with pytest.raises(ValidationFailure, match="gas_concentration"):
            _decode(body)


def test_malformed_readings_are_not_json() -> None:
    rng = random.Random(5)
    ts = timestamp(now(), 0.0, 0.0)
    for n in range(50):
        body = reading_bytes(DEVICE, event_id("r", DEVICE, n), ts, rng, Misbehaviour.MALFORMED)
        with pytest.raises(ValidationFailure):
            _decode(body)


def test_same_seed_same_values() -> None:
    ts = timestamp(now(), 0.0, 0.0)
    first = [reading_bytes(DEVICE, "e", ts, random.Random(9), None) for _ in range(3)]
    assert len(set(first)) == 1
    assert reading_bytes(DEVICE, "e", ts, random.Random(10), None) != first[0]

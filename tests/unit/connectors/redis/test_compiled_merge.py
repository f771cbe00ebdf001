"""The Redis sink's compiled merge (native/, Rust) against the Python reference.

Both get the same generated batches of curated envelopes (many readings of a few devices,
readings out of order, repeated field names across sensor types, values that are objects,
arrays or null, unicode and quotes in names, timestamps with and without microseconds or with
an offset, items missing a field, records that are no envelope) and the compiled merge must
either write the reference's commands byte for byte or leave the batch to it. The last tests
check that it does not leave the ordinary batches (a merge that left everything would pass
the comparison and do nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.curated import Turns
from agents.redis_sink import merge
from agents.sink_group import SinkMessage
from connectors.redis.compiled import CompiledMerge
from connectors.redis.keys import RedisKeys
from connectors.redis.wire import pack
from connectors.redis.writer import ALL_CHANNEL_CHUNK, RedisWriter
from schemas.envelopes import curated_envelope
from tests.clock import now

pytest.importorskip("fleetstream_native")

NOW = now()
PREFIX = "fleet"
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLUS_2 = timezone(timedelta(hours=2))
RARE = 137
"""A draw that makes a rare case (hypothesis favours 0 and the bounds, so not those)."""

DEVICES = ["esp32-a", "esp32-b", 'q"uo\\te', "café-7", "x"]
SENSORS = ["ld2410", "mq134", "generic", "a", "a.b"]
FIELDS = ["distance_cm", "gas", "b.c", "c", "é"]

scalars = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6),
)
values = st.one_of(scalars, st.none(), st.just([1, 2]), st.just({"deep": 1}))
sensor_objects = st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)
sensor_values: st.SearchStrategy[Any] = st.one_of(
    sensor_objects, sensor_objects, scalars, st.just([]), st.none()
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = NOW + timedelta(microseconds=draw(st.integers(-(10**8), 10**8)))
    if draw(st.integers(0, 3)) == 0:
        moment = moment.replace(microsecond=0)
    if draw(st.integers(0, 200)) == RARE:
        moment = moment.astimezone(PLUS_2)
    return msgspec.json.encode(moment).decode()[1:-1]


@st.composite
def items(draw: st.DrawFn) -> bytes:
    item: dict[str, Any] = {
        "schema_version": 1,
        "event_id": draw(st.sampled_from(["e1", "e2", "e3", 'é"4'])),
        "device_id": draw(st.sampled_from(DEVICES)),
        "ts": draw(timestamps()),
        "received_at": draw(timestamps()),
        "sensors": draw(st.dictionaries(st.sampled_from(SENSORS), sensor_values, max_size=4)),
        "tags": ["t"],
    }
    if draw(st.integers(0, 200)) == RARE:
        del item[draw(st.sampled_from(["event_id", "ts", "sensors", "device_id"]))]
    return msgspec.json.encode(item)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    encoded = draw(st.lists(items(), min_size=1, max_size=8))
    if draw(st.integers(0, 40)) == RARE % 40:
        return b'{"items":[]}'
    positions = [(0, n, 0) for n in range(len(encoded))] if draw(st.booleans()) else None
    return curated_envelope(encoded, positions)


def _message(value: bytes, offset: int) -> SinkMessage:
    return SinkMessage("curated", 0, offset, None, value, 0.0, None)


async def _reference(values: list[bytes]) -> bytes:
    messages = [_message(value, n) for n, value in enumerate(values)]
    batch, _ = await merge(
        messages, readings_topic="curated", deadletter_topic="dead", now=NOW, turn=Turns(10**9)
    )
    return pack(RedisWriter(cast(Any, None), RedisKeys(PREFIX)).commands(batch))


@EXAMPLES
@given(st.lists(envelopes(), min_size=1, max_size=6))
async def test_the_compiled_merge_writes_the_reference_s_commands_or_leaves_the_batch(
    values: list[bytes],
) -> None:
    packed = CompiledMerge(PREFIX).merge(values)
    if packed is not None:
        assert packed.data == await _reference(values)


def _ordinary(devices: int, readings_each: int) -> list[bytes]:
    values = []
    for n in range(readings_each):
        moment = NOW + timedelta(seconds=n, microseconds=n * 1000)
        stamp = msgspec.json.encode(moment).decode()[1:-1]
        batch = [
            msgspec.json.encode(
                {
                    "event_id": f"{d}-{n}",
                    "device_id": f"dev-{d}",
                    "ts": stamp,
                    "received_at": stamp,
                    "sensors": {"ld2410": {"distance_cm": n, "moving": True}, "mq134": {"g": 0.5}},
                }
            )
            for d in range(devices)
        ]
        values.append(curated_envelope(batch, [(0, n, d) for d in range(devices)]))
    return values


async def test_an_ordinary_batch_is_taken_whole_and_counted() -> None:
    values = _ordinary(devices=3, readings_each=4)
    packed = CompiledMerge(PREFIX).merge(values)
    assert packed is not None
    assert packed.data == await _reference(values)
    assert (packed.devices, packed.commands) == (3, 3 * 3 + 1)


async def test_the_all_devices_channel_is_cut_in_chunks() -> None:
    values = _ordinary(devices=ALL_CHANNEL_CHUNK + 1, readings_each=1)
    packed = CompiledMerge(PREFIX).merge(values)
    assert packed is not None
    assert packed.commands == 3 * (ALL_CHANNEL_CHUNK + 1) + 2
    assert packed.data == await _reference(values)


def test_a_timestamp_with_an_offset_leaves_the_batch_to_the_reference() -> None:
    values = _ordinary(devices=1, readings_each=1)
    stamp = msgspec.json.encode(NOW).decode()[1:-1]
    offset = msgspec.json.encode(NOW.astimezone(PLUS_2)).decode()[1:-1]
    assert CompiledMerge(PREFIX).merge([values[0].replace(stamp.encode(), offset.encode())]) is None


def test_a_record_that_is_no_envelope_leaves_the_batch_to_the_reference() -> None:
    assert CompiledMerge(PREFIX).merge([*_ordinary(1, 1), b"{broken"]) is None
    assert CompiledMerge(PREFIX).merge([*_ordinary(1, 1), None]) is None


@pytest.mark.parametrize("text", ["tab\there", "nul\x00", "c1\u0085"])
def test_a_control_character_leaves_the_batch_to_the_reference(text: str) -> None:
    stamp = msgspec.json.encode(NOW).decode()[1:-1]
    item = {"event_id": "e", "device_id": "d", "ts": stamp, "received_at": stamp}
    value = curated_envelope([msgspec.json.encode({**item, "sensors": {"s": {"f": text}}})])
    assert CompiledMerge(PREFIX).merge([value]) is None


def test_utc_and_python_isoformat_agree_on_microseconds() -> None:
    moment = datetime(2026, 3, 1, 0, 0, 0, 5, tzinfo=UTC)
    stamp = msgspec.json.encode(moment).decode()[1:-1]
    item = {"event_id": "e", "device_id": "d", "ts": stamp, "received_at": stamp}
    value = curated_envelope([msgspec.json.encode({**item, "sensors": {}})])
    packed = CompiledMerge(PREFIX).merge([value])
    assert packed is not None
    assert moment.isoformat().encode() in packed.data

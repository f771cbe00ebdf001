"""Every per-device row the worker stores has a size bound: the status row's last values and the
rollup row's fields and windows are bounded, exactly at a bound nothing is lost, one past it is
handled, and a device sending the worst input the validator takes gets rows under the bytes
``schemas.status`` states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from agents.curated import Item, new_items
from agents.rollups import PendingRollups, RollupTracker
from agents.sink_group import SinkMessage
from agents.status import StatusTracker
from schemas.catalogue import GenericLimits
from schemas.envelopes import curated_envelope
from schemas.events import encode_curated, validate_event_with_sensors
from schemas.settings import ApiSettings, KafkaSettings, Settings, StreamSettings
from schemas.status import (
    ROW_MAX_BYTES,
    DeviceState,
    RollupState,
    decode_device_state,
    decode_rollup_state,
    encode,
    rollup_row_max_bytes,
    rollup_windows_needed,
    status_row_max_bytes,
)
from tests.factories import raw_event
from tests.pipeline_helpers import read_batch

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LONGEST_FLOAT = -1.2345678901234567e-100
"""24 bytes in JSON, as long as a finite float gets."""


def item(second: float, sensors: dict[str, Any], *, received_after_s: float = 1.0) -> Item:
    ts = T0 + timedelta(seconds=second)
    return Item(
        event_id=f"e{second}",
        device_id="esp32-a",
        ts=ts,
        received_at=ts + timedelta(seconds=received_after_s),
        sensors=sensors,
    )


def generic(*names: str) -> dict[str, Any]:
    return {"generic": {name: 1.5 for name in names}}


# -- the status row: last values -------------------------------------------------------------


def test_last_values_at_their_bound_keep_every_field_and_one_more_drops_the_stalest() -> None:
    tracker = StatusTracker(60, max_values=4)
    state, _ = tracker.apply(None, "esp32-a", [item(1, generic("a", "b", "c", "d"))], T0)
    assert (list(state.last_values), state.values_dropped) == (
        ["generic.a", "generic.b", "generic.c", "generic.d"],
        0,
    )
    state, _ = tracker.apply(state, "esp32-a", [item(2, generic("a"))], T0)
    state, _ = tracker.apply(state, "esp32-a", [item(3, generic("e"))], T0)
    assert list(state.last_values) == ["generic.c", "generic.d", "generic.a", "generic.e"], (
        "b was updated least recently (a just now): b goes, not the first-seen a"
    )
    assert state.values_dropped == 1


def test_a_batch_with_more_new_fields_than_the_bound_keeps_the_last_named() -> None:
    tracker = StatusTracker(60, max_values=3)
    names = [f"f{n}" for n in range(10)]
    state, _ = tracker.apply(None, "esp32-a", [item(1, generic(*names))], T0)
    assert list(state.last_values) == ["generic.f7", "generic.f8", "generic.f9"]
    assert state.values_dropped == 7


def test_a_row_stored_before_the_bound_is_cut_to_it_on_its_next_reading() -> None:
    old = DeviceState(
        device_id="esp32-a",
        first_seen=T0,
        last_seen=T0,
        last_ts=T0,
        last_event_id="e0",
        count=1,
        last_values={f"generic.f{n}": n for n in range(10)},
    )
    legacy = encode(old).replace(b',"values_dropped":0', b"")
    assert b"values_dropped" not in legacy
    state = decode_device_state(legacy)
    state, _ = StatusTracker(60, max_values=4).apply(state, "esp32-a", [item(1, generic("x"))], T0)
    assert list(state.last_values) == ["generic.f7", "generic.f8", "generic.f9", "generic.x"]
    assert state.values_dropped == 7


# -- the rollup row: fields per window, windows per row ---------------------------------------


def test_a_window_at_its_field_bound_rolls_every_field_up_and_a_further_one_is_counted() -> None:
    tracker = RollupTracker(grace_s=300, max_fields=3)
    state, rollups = tracker.apply(None, "esp32-a", [item(1, generic("a", "b", "c"))])
    assert {r.field for r in rollups} == {"generic.a", "generic.b", "generic.c"}
    assert state.dropped_fields == 0
    state, rollups = tracker.apply(state, "esp32-a", [item(2, generic("a", "d"))])
    assert {(r.field, r.count) for r in rollups} == {
        ("generic.a", 2),
        ("generic.b", 1),
        ("generic.c", 1),
    }, "known fields go on aggregating; d is in no rollup"
    assert state.dropped_fields == 1
    (window,) = state.windows.values()
    assert sorted(window) == ["generic.a", "generic.b", "generic.c"]
    _, rollups = tracker.apply(state, "esp32-a", [item(61, generic("d"))])
    assert [r.field for r in rollups] == ["generic.d"], "the next window has room again"


def test_a_row_at_its_window_bound_makes_room_for_a_newer_window_never_an_older_one() -> None:
    tracker = RollupTracker(grace_s=300, max_windows=3)
    gas = {"mq134": {"gas_concentration": 1.0, "raw_value": 7}, "pir": {"motion_detected": True}}
    state, _ = tracker.apply(None, "esp32-a", [item(second, gas) for second in (0, 60, 120)])
    starts = sorted(state.windows)
    assert len(starts) == 3 and state.dropped_fields == 0
    state, rollups = tracker.apply(state, "esp32-a", [item(180, gas)])
    assert sorted(state.windows) == [*starts[1:], starts[2] + 60], "the oldest gave way"
    assert {r.window_start for r in rollups} == {T0 + timedelta(minutes=3)}
    # T0's window is within its grace period, but would now be the oldest of a full row
    state, rollups = tracker.apply(state, "esp32-a", [item(30, gas, received_after_s=160)])
    assert rollups == []
    assert (state.dropped_fields, state.late) == (2, 0), "its two numbers are counted"


def test_a_rollup_row_stored_before_the_bounds_decodes_with_nothing_dropped() -> None:
    legacy = b'{"device_id":"esp32-a","windows":{"60":{"generic.a":[1,1,1,1]}},"late":2}'
    state = decode_rollup_state(legacy)
    assert (state.dropped_fields, state.late, state.windows) == (0, 2, {60: {"generic.a": [1] * 4}})


# -- the stated bytes, and the worst a device can send -----------------------------------------


def test_the_figures_the_docstrings_state_are_the_computed_ones() -> None:
    assert status_row_max_bytes(128, 8) == 12_849
    assert rollup_row_max_bytes(24, 64, 8) == 262_271
    assert rollup_windows_needed(300, 300) == 13
    stream, partitions = StreamSettings(), KafkaSettings().partitions
    assert status_row_max_bytes(stream.status_max_values, partitions) == 12_849
    assert rollup_row_max_bytes(stream.rollup_max_windows, stream.rollup_max_fields, 8) < (
        ROW_MAX_BYTES
    )


def test_settings_that_would_let_a_row_pass_its_byte_bound_are_refused() -> None:
    with pytest.raises(ValidationError, match="ROLLUP_MAX_WINDOWS or __ROLLUP_MAX_FIELDS"):
        Settings(stream=StreamSettings(rollup_max_fields=130))
    with pytest.raises(ValidationError, match="STATUS_MAX_VALUES"):
        Settings(stream=StreamSettings(status_max_values=6000))
    with pytest.raises(ValidationError, match="keep up to 68 windows open"):
        Settings(stream=StreamSettings(rollup_grace_s=3600))
    Settings(stream=StreamSettings(rollup_max_fields=96, rollup_max_windows=30))
    Settings(stream=StreamSettings(status_max_values=5000))
    with pytest.raises(ValidationError, match="keep up to 25 windows open"):
        Settings(api=ApiSettings(timestamp_max_ahead_s=1020))


@dataclass
class Hostile:
    """A device sending what the worker takes at worst: readings of 48 generic fields (the
    per-reading bound) under unknown sensor types, every name of 32 characters and never sent
    before, values of the longest JSON, timestamps up to 25 minutes ahead (the worker takes a
    day), from every raw partition at the largest offsets."""

    device_id: str = "d" * 128
    partitions: int = 8
    sent: int = 0

    def reading(self, ahead_s: int) -> dict[str, Any]:
        n, self.sent = self.sent, self.sent + 1
        sensors = {
            f"s{n:030d}{k}": {f"f{m:031d}": LONGEST_FLOAT for m in range(count)}
            for k, count in enumerate((32, 16))
        }
        at = T0 + timedelta(seconds=ahead_s)
        return {"device_id": self.device_id, "timestamp": at.isoformat(), "sensors": sensors}

    def batch(self, bodies: list[dict[str, Any]]) -> list[tuple[Item, Any]]:
        """The bodies validated and curated as the worker does, and read back as the status and
        rollup agents read them."""
        curated = []
        for body in bodies:
            event = raw_event(body, received_at=T0)
            validated = validate_event_with_sensors(
                event, now=T0, unknown_sensors="generic", limits=GenericLimits()
            )
            curated.append(encode_curated(validated.curated))
        first = self.sent - len(bodies)
        positions = [
            ((first + n) % self.partitions, 2**62 + first + n, 999_999) for n in range(len(bodies))
        ]
        value = curated_envelope(curated, positions)
        message = SinkMessage("fleet.curated.v1", 0, 0, None, value, 0.0, None)
        batch = read_batch([message], stage="test", now=T0)
        return batch.devices[self.device_id].items


def test_a_device_sending_the_worst_allowed_input_gets_rows_under_the_stated_bytes() -> None:
    settings = Settings()
    stream, partitions = settings.stream, settings.kafka.partitions
    assert rollup_windows_needed(stream.rollup_grace_s, settings.api.timestamp_max_ahead_s) <= (
        stream.rollup_max_windows
    )
    device = Hostile(partitions=partitions)
    status = StatusTracker(60, max_values=stream.status_max_values)
    rollups = PendingRollups(
        RollupTracker(
            stream.rollup_grace_s,
            max_fields=stream.rollup_max_fields,
            max_windows=stream.rollup_max_windows,
        ),
        slots=1,
    )
    state: DeviceState | None = None
    written: dict[str, bytes] = {}

    def load(device_id: str) -> RollupState | None:
        row = written.get(device_id)
        return None if row is None else decode_rollup_state(row)

    windows = stream.rollup_max_windows + 1  # one more than a row holds
    for minute in range(windows):  # a batch per window: two readings of 48 new fields each
        items = device.batch([device.reading(minute * 60 + 5), device.reading(minute * 60 + 6)])
        applied = dict(state.positions) if state is not None else {}
        state, _ = status.apply(state, device.device_id, new_items(items, applied), T0)
        state.positions = applied
        state = decode_device_state(encode(state))  # written and read back, as the worker does
        assert rollups.apply(device.device_id, "event", items, load) == 2
        ((_, row),) = rollups.flush().rows
        written[device.device_id] = encode(row)
    assert state is not None
    row = decode_rollup_state(written[device.device_id])

    names = 2 * 48 * windows
    assert len(state.last_values) == stream.status_max_values
    assert state.values_dropped == names - stream.status_max_values
    assert len(state.positions) == partitions
    status_bytes, status_bound = (
        len(encode(state)),
        status_row_max_bytes(stream.status_max_values, partitions),
    )
    assert 0.8 * status_bound < status_bytes <= status_bound

    assert len(row.windows) == stream.rollup_max_windows
    assert all(len(window) == stream.rollup_max_fields for window in row.windows.values())
    assert row.dropped_fields == windows * (96 - stream.rollup_max_fields)
    rollup_bytes = len(written[device.device_id])
    rollup_bound = rollup_row_max_bytes(
        stream.rollup_max_windows, stream.rollup_max_fields, partitions
    )
    assert 0.8 * rollup_bound < rollup_bytes <= rollup_bound <= ROW_MAX_BYTES

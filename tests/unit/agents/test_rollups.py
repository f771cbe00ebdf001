"""1-minute windows without Faust: aggregates, late readings, state that does not grow, and
when each device is published and each batch acked."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents import curated as curated_module
from agents.curated import Item
from agents.held_rows import slot_of
from agents.rollups import PendingRollups, RollupTracker
from schemas.status import (
    Rollup,
    RollupState,
    decode_rollup,
    decode_rollup_state,
    encode,
    newest_rollups,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def item(
    second: float, gas: float, *, received_after_s: float = 1.0, device_id: str = "esp32-a"
) -> Item:
    ts = T0 + timedelta(seconds=second)
    return Item(
        event_id=f"e{second}",
        device_id=device_id,
        ts=ts,
        received_at=ts + timedelta(seconds=received_after_s),
        sensors={"mq134": {"gas_concentration": gas}, "pir": {"motion_detected": True}},
    )


def test_windows_hold_count_min_max_mean_per_field_and_skip_booleans() -> None:
    tracker = RollupTracker(grace_s=30)
    _, rollups = tracker.apply(None, "esp32-a", [item(1, 10), item(30, 20), item(61, 5)])
    by_window = {(r.window_start, r.field): r for r in rollups}
    first = by_window[(T0, "mq134.gas_concentration")]
    assert (first.count, first.min, first.max, first.mean) == (2, 10, 20, 15)
    assert first.window_end == T0 + timedelta(minutes=1)
    second = by_window[(T0 + timedelta(minutes=1), "mq134.gas_concentration")]
    assert (second.count, second.sum) == (1, 5)
    assert {r.field for r in rollups} == {"mq134.gas_concentration"}


def test_fields_beyond_the_name_cache_bound_still_aggregate_under_their_own_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(curated_module, "NAMES_KEPT", 2)
    curated_module.FIELD_NAMES.clear()  # the one cache the agents share, emptied in place
    sensors: dict[str, Any] = {
        sensor: {"a": 1, "b": 2.5, "c": 3, "flag": False} for sensor in ("s1", "s2", "s3")
    }
    readings = [
        Item(event_id=f"e{n}", device_id="gen-1", ts=T0, received_at=T0, sensors=sensors)
        for n in range(3)
    ]
    _, rollups = RollupTracker(grace_s=30).apply(None, "gen-1", readings)
    assert {(r.field, r.count, r.sum) for r in rollups} == {
        (f"{sensor}.{field}", 3, 3 * value)
        for sensor in ("s1", "s2", "s3")
        for field, value in (("a", 1), ("b", 2.5), ("c", 3))
    }


def test_a_late_reading_within_the_grace_period_updates_its_window() -> None:
    tracker = RollupTracker(grace_s=30)
    state, _ = tracker.apply(None, "esp32-a", [item(10, 10), item(70, 1)])
    state, rollups = tracker.apply(state, "esp32-a", [item(20, 30, received_after_s=60)])
    (updated,) = rollups
    assert (updated.window_start, updated.count, updated.max) == (T0, 2, 30)


def test_a_reading_after_the_grace_period_is_in_no_rollup() -> None:
    tracker = RollupTracker(grace_s=30)
    state, rollups = tracker.apply(None, "esp32-a", [item(20, 30, received_after_s=71)])
    assert rollups == []
    assert state.late == 1


def test_closed_windows_leave_the_state() -> None:
    tracker = RollupTracker(grace_s=0)
    state, _ = tracker.apply(None, "esp32-a", [item(0, 1)])
    state, _ = tracker.apply(state, "esp32-a", [item(60 * 10, 1)])
    assert list(state.windows) == [int((T0 + timedelta(minutes=10)).timestamp())]


def test_upserts_keep_the_aggregate_with_the_highest_count() -> None:
    tracker = RollupTracker(grace_s=30)
    state, early = tracker.apply(None, "esp32-a", [item(1, 10)])
    state, late = tracker.apply(state, "esp32-a", [item(2, 50)])
    (kept,) = newest_rollups([*late, *early])
    assert (kept.count, kept.max) == (2, 50)


SLOTS = 5
DEVICES = [f"esp32-{n:03}" for n in range(100)]


def pending() -> PendingRollups:
    return PendingRollups(RollupTracker(grace_s=30), SLOTS)


def apply_batch(rollups: PendingRollups, batch: str, offset: int, devices: list[str]) -> None:
    """One taken batch: a reading of each device at raw position (0, offset, n)."""
    for n, device in enumerate(devices):
        reading = item(offset, offset, device_id=device)
        rollups.apply(device, f"{batch}-event", [(reading, (0, offset, n))], lambda _: None)
    rollups.took([batch])


def test_each_tick_publishes_and_writes_one_slot_so_every_device_once_per_interval() -> None:
    rollups = pending()
    apply_batch(rollups, "a", 1, DEVICES)
    written: list[str] = []
    per_tick = []
    for tick in range(1, SLOTS + 1):
        due = rollups.tick()
        devices = [state.device_id for _, state in due.rows]
        assert {r.device_id for r in due.rollups} == set(devices)
        assert {slot_of(d, SLOTS) for d in devices} <= {tick % SLOTS}
        per_tick.append(len(devices))
        written += devices
    assert sorted(written) == DEVICES, "each device is written exactly once"
    assert max(per_tick) < len(DEVICES) / 2, f"the work is spread over the ticks: {per_tick}"
    assert len(rollups) == 0
    assert rollups.tick().rows == [], "nothing new: nothing written again"


def test_a_batch_is_acked_only_once_every_device_in_it_was_written() -> None:
    rollups = pending()
    apply_batch(rollups, "a", 1, DEVICES)
    written_at: dict[str, int] = {}
    acked_at: dict[str, int] = {}
    for tick in range(1, 3 * SLOTS):
        if tick == 2:  # applied after tick 1: acked once ticks 2 .. 1 + SLOTS wrote every slot
            apply_batch(rollups, "b", 2, DEVICES[:10])
        due = rollups.tick()
        for _, state in due.rows:
            written_at[state.device_id] = tick
        for batch in due.acked:
            acked_at[batch] = tick
    assert acked_at == {"a": SLOTS, "b": 1 + SLOTS}
    assert all(2 <= written_at[d] <= acked_at["b"] for d in DEVICES[:10])


def test_a_device_keeps_applying_until_its_tick_and_repeats_count_once() -> None:
    rollups = pending()
    device = DEVICES[0]
    readings = [(item(n, n, device_id=device), (0, n, 0)) for n in range(1, 4)]
    assert rollups.apply(device, "e1", readings[:2], lambda _: None) == 2
    assert rollups.apply(device, "e2", readings, lambda _: None) == 1, "positions drop repeats"
    rows: list[tuple[object, RollupState]] = []
    while not rows:
        rows = rollups.tick().rows
    ((event, state),) = rows
    assert event == "e1", "the row goes to the partition of the device's first event"
    assert state.positions == {"0": (3, 0)}
    (window,) = state.windows.values()
    assert window["mq134.gas_concentration"][0] == 3


def test_a_window_closed_before_its_tick_is_still_published_with_its_last_aggregate() -> None:
    rollups = PendingRollups(RollupTracker(grace_s=0), SLOTS)
    device = DEVICES[0]
    rollups.apply(device, "e", [(item(1, 10), (0, 1, 0)), (item(2, 20), (0, 2, 0))], lambda _: None)
    rollups.apply(device, "e", [(item(60 * 10, 1), (0, 3, 0))], lambda _: None)  # closes T0's
    published: list[Rollup] = []
    while not published:
        published = rollups.tick().rollups
    counts = {(r.window_start, r.field): r.count for r in published}
    assert counts[(T0, "mq134.gas_concentration")] == 2


def test_a_flush_writes_every_pending_device_and_acks_every_batch_at_once() -> None:
    """What the worker does while it stops or rebalances (Faust waits for the acks)."""
    rollups = pending()
    apply_batch(rollups, "a", 1, DEVICES)
    first = [state.device_id for _, state in rollups.tick().rows]
    apply_batch(rollups, "b", 2, DEVICES[:10])
    due = rollups.flush()
    assert due.acked == ["a", "b"]
    flushed = [state.device_id for _, state in due.rows]
    assert len(flushed) == len(set(flushed))
    assert set(first) | set(flushed) == set(DEVICES)
    assert set(flushed) >= set(DEVICES[:10]), "b's devices are written again by the flush"
    assert len(rollups) == 0
    after = rollups.tick()
    assert (after.rollups, after.rows, after.acked) == ([], [], [])
    assert after.slot is not None, "a tick names its slot; only a flush writes them all"
    assert due.slot is None


@pytest.mark.parametrize("value", [1.7e308, -1.7e308])
def test_a_sum_past_the_largest_float_saturates_and_the_state_still_decodes(value: float) -> None:
    tracker = RollupTracker(grace_s=30)
    state, rollups = tracker.apply(None, "esp32-a", [item(1, value), item(2, value)])
    state, rollups = tracker.apply(state, "esp32-a", [item(3, value)])
    [gas] = [r for r in rollups if r.field == "mq134.gas_concentration"]
    assert gas.count == 3
    assert gas.sum == math.copysign(sys.float_info.max, value)
    assert math.isfinite(gas.mean)
    again = decode_rollup_state(encode(state))  # `inf` would be written as null and fail here
    assert again.windows == state.windows
    assert decode_rollup(encode(gas)) == gas

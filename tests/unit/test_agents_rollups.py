"""1-minute windows without Faust: aggregates, late readings, state that does not grow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.curated import Item
from agents.rollups import RollupTracker
from connectors.postgres.rollups import newest

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def item(second: float, gas: float, *, received_after_s: float = 1.0) -> Item:
    ts = T0 + timedelta(seconds=second)
    return Item(
        event_id=f"e{second}",
        device_id="esp32-a",
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
    (kept,) = newest([*late, *early])
    assert (kept.count, kept.max) == (2, 50)

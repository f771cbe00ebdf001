"""The status timer's deadline index: only due devices, each until it is noted again."""

from __future__ import annotations

from datetime import timedelta

from agents.status import Deadlines
from schemas.status import DeviceState
from tests.clock import now

NOW = now()
T = NOW.timestamp()


def state(device_id: str, seen_s_ago: float = 0.0, *, online: bool = True) -> DeviceState:
    seen = NOW - timedelta(seconds=seen_s_ago)
    return DeviceState(
        device_id=device_id,
        first_seen=seen,
        last_seen=seen,
        last_ts=seen,
        last_event_id="e",
        count=1,
        online=online,
    )


def test_due_devices_come_in_deadline_order_and_stay_due_until_noted_again() -> None:
    deadlines = Deadlines()
    for n in range(100):
        deadlines.note(state(f"d{n:03}", seen_s_ago=n), 1000)
    assert deadlines.due(T) == []
    due = deadlines.due(T + 1000 - 95)  # silent 95 s or more: d095 .. d099
    assert due == [f"d{n:03}" for n in range(99, 94, -1)]
    assert deadlines.due(T + 1000 - 95) == due, "not handled yet: still due"
    deadlines.note(state("d099", online=False), 1000)
    deadlines.note(state("d098"), 1000)  # a reading came: a later deadline
    deadlines.forget("d097")
    assert deadlines.due(T + 1000 - 95) == ["d096", "d095"]


def test_a_device_noted_many_times_is_due_once_at_its_latest_deadline() -> None:
    deadlines = Deadlines()
    for seen in range(50, 0, -1):  # readings keep coming: its deadline moves on each time
        deadlines.note(state("d", seen_s_ago=seen), 60)
    assert deadlines.due(T + 60 - 2) == []
    assert deadlines.due(T + 60 - 1) == ["d"]
    deadlines.note(state("d"), 60)
    deadlines.note(state("d", seen_s_ago=1), 60)  # the same deadline as an older entry
    assert deadlines.due(T + 60) == ["d"]


def test_stale_entries_do_not_pile_up() -> None:
    deadlines = Deadlines()
    for round_ in range(200):
        for n in range(100):
            deadlines.note(state(f"d{n}", seen_s_ago=-round_), 60)
    assert len(deadlines) == 100
    assert len(deadlines._heap) <= 2 * 100 + 1024
    assert sorted(deadlines.due(T + 60 + 199)) == sorted(f"d{n}" for n in range(100))

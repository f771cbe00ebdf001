"""The recovery tests' reading of the status topic's promise (``transition_problems``)."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from schemas.status import StatusChange
from tests.clock import now
from tests.integration.stream_core import transition_problems

NOW = now()


def change(seq: int, *, online: bool | None = None, later_s: int = 0) -> StatusChange:
    online = seq % 2 == 1 if online is None else online
    return StatusChange(
        device_id="d1",
        seq=seq,
        online=online,
        reason="reading" if online else "timeout",
        changed_at=NOW + timedelta(seconds=later_s),
        last_seen=NOW,
        timeout_s=3,
    )


def test_in_order_transitions_and_repeats_of_the_same_one_keep_the_promise() -> None:
    assert transition_problems([change(1), change(2), change(3)]) == []
    # a redo after a crash: the same transitions again, the same records
    repeated = [change(1), change(2), change(1), change(2), change(3)]
    assert transition_problems(repeated) == []


def test_a_repeat_stamped_differently_fails() -> None:
    (problem,) = transition_problems([change(1), change(1, later_s=5)])
    assert problem.startswith("#1: seq 1 is")


def test_a_gap_fails() -> None:
    assert transition_problems([change(1), change(3)]) == ["#1: seq 3 follows seq 1"]


def test_a_reorder_fails() -> None:
    problems = transition_problems([change(2), change(1)])
    assert problems[0] == "#0: seq 2 follows seq 0"


def test_two_different_transitions_under_one_seq_fail() -> None:
    other = msgspec.structs.replace(change(1), reason="timeout")
    (problem,) = transition_problems([change(1), other])
    assert problem.startswith("#1: seq 1 is")


def test_a_seq_whose_parity_disagrees_with_online_fails() -> None:
    assert transition_problems([change(1, online=False)]) == ["#0: seq 1 with online=False"]

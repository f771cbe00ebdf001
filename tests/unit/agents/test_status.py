"""Status rules without Faust: transitions, their numbering, repeats dropped by position."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agents.curated import Item, new_items
from agents.sink_group import SinkMessage
from agents.status import Deadlines, StatusTracker
from schemas.envelopes import curated_envelope
from schemas.events import encode_curated
from schemas.status import DeviceState
from tests.clock import now
from tests.factories import raw_event, reading
from tests.pipeline_helpers import read_batch, validate_event

NOW = now()


def item(n: int, *, received: datetime = NOW, **sensors: Any) -> Item:
    return Item(
        event_id=f"e{n}",
        device_id="esp32-a",
        ts=NOW - timedelta(seconds=60 - n),
        received_at=received,
        sensors=sensors or {"pir": {"motion_detected": n % 2 == 0}, "mq134": {"gas": n}},
    )


def test_the_first_recent_reading_brings_a_device_online_once() -> None:
    tracker = StatusTracker(default_timeout_s=60)
    state, change = tracker.apply(None, "esp32-a", [item(1), item(2)], NOW)
    assert change is not None and (change.seq, change.online, change.reason) == (1, True, "reading")
    assert (state.count, state.last_event_id, state.online, state.seq) == (2, "e2", True, 1)
    assert state.last_values == {"pir.motion_detected": True, "mq134.gas": 2}
    state, again = tracker.apply(state, "esp32-a", [item(3)], NOW + timedelta(seconds=1))
    assert again is None
    assert state.count == 3


def test_old_readings_alone_do_not_bring_a_device_online() -> None:
    tracker = StatusTracker(default_timeout_s=60)
    old = NOW - timedelta(minutes=5)
    state, change = tracker.apply(None, "esp32-a", [item(1, received=old)], NOW)
    assert change is None
    assert (state.online, state.seq, state.last_seen) == (False, 0, old)


def test_silence_past_the_timeout_goes_offline_then_a_reading_online_with_the_next_seq() -> None:
    timeouts = {"esp32-a": 5}
    tracker = StatusTracker(default_timeout_s=60, timeout_of=timeouts.get)
    state, _ = tracker.apply(None, "esp32-a", [item(1)], NOW)
    assert tracker.expire(state, NOW + timedelta(seconds=4)) is None
    offline = tracker.expire(state, NOW + timedelta(seconds=5))
    assert offline is not None and (offline.seq, offline.online, offline.timeout_s) == (2, False, 5)
    assert tracker.expire(state, NOW + timedelta(seconds=50)) is None  # offline stays offline
    later = NOW + timedelta(seconds=60)
    state, online = tracker.apply(state, "esp32-a", [item(2, received=later)], later)
    assert online is not None and (online.seq, online.online) == (3, True)


def test_deadlines_follow_online_devices_only() -> None:
    tracker = StatusTracker(default_timeout_s=10)
    state, _ = tracker.apply(None, "esp32-a", [item(1)], NOW)
    deadlines = Deadlines()
    deadlines.note(state, 10)
    assert deadlines.due(NOW.timestamp() + 9) == []
    assert deadlines.due(NOW.timestamp() + 10) == ["esp32-a"]
    tracker.expire(state, NOW + timedelta(seconds=10))
    deadlines.note(state, 10)
    assert deadlines.due(NOW.timestamp() + 100) == []


def test_a_raw_record_validated_twice_counts_once() -> None:
    applied: dict[str, tuple[int, int]] = {}
    first = [(item(1), (0, 10, 0)), (item(2), (0, 10, 1)), (item(3), (0, 11, 0))]
    assert [i.event_id for i in new_items(first, applied)] == ["e1", "e2", "e3"]
    # validate re-ran offsets 10 and 11 after a crash, then went on with 12
    again = [(item(1), (0, 10, 0)), (item(2), (0, 10, 1)), (item(3), (0, 11, 0))]
    again += [(item(4), (0, 12, 0))]
    assert [i.event_id for i in new_items(again, applied)] == ["e4"]
    assert applied == {"0": (12, 0)}
    # items without a position (older envelopes) are never dropped
    assert [i.event_id for i in new_items([(item(5), None)], applied)] == ["e5"]


def test_read_batch_groups_items_per_device_with_positions() -> None:
    events = [raw_event(reading(f"esp32-{n % 2}", n)) for n in range(4)]
    items = [encode_curated(validate_event(e, now=NOW)) for e in events]
    value = curated_envelope(items, [(1, 7, n) for n in range(4)])

    messages = [SinkMessage("c", 1, 0, None, v, 0.0, None) for v in (value, b"nonsense")]
    batch = read_batch(messages, stage="status", now=NOW)
    assert sorted(batch.devices) == ["esp32-0", "esp32-1"]
    assert [pos for _, pos in batch.devices["esp32-1"].items] == [(1, 7, 1), (1, 7, 3)]
    assert len(batch.letters) == 1


def test_state_survives_its_encoding() -> None:
    from schemas.status import decode_device_state, encode

    state, _ = StatusTracker(60).apply(None, "esp32-a", [item(1)], NOW)
    state.positions = {"3": (5, 0)}
    assert decode_device_state(encode(state)) == state
    assert isinstance(decode_device_state(encode(state)), DeviceState)

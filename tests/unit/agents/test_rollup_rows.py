"""Stored rollup rows: windows stay encoded until they take a reading, the row comes out as
the fully decoded one would, and a window that does not decode quarantines its row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from agents.curated import Item
from agents.rollups import PendingRollups, RollupTracker, StoredRow, decode_stored, rollups_of
from schemas.status import RollupState, decode_rollup_state, encode

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def item(minute: int, gas: float, second: int = 1) -> Item:
    ts = T0 + timedelta(minutes=minute, seconds=second)
    return Item(
        event_id=f"e{minute}-{second}",
        device_id="esp32-a",
        ts=ts,
        received_at=ts + timedelta(seconds=1),
        sensors={"mq134": {"gas_concentration": gas, "raw_value": 900}},
    )


def stored_row() -> bytes:
    """A row with eight windows, as a tick writes it."""
    state, _ = RollupTracker(grace_s=300).apply(
        None, "esp32-a", [item(minute, 10.5 + minute) for minute in range(8)]
    )
    state.positions = {"0": (41, 3)}
    return encode(state)


def test_the_stored_row_has_the_fields_of_the_state() -> None:
    assert StoredRow.__struct_fields__ == RollupState.__struct_fields__


def test_an_untouched_row_encodes_back_to_its_bytes() -> None:
    row = stored_row()
    assert encode(decode_stored(row)) == row


def test_readings_on_a_stored_row_give_what_they_give_on_the_decoded_one() -> None:
    row = stored_row()
    tracker = RollupTracker(grace_s=300)
    later = [item(7, 99.0, second=30), item(8, 1.0), item(9, 2.5)]
    lazy, eager = decode_stored(row), decode_rollup_state(row)
    lazy_rollups = rollups_of("esp32-a", tracker.add(lazy, later))
    eager_rollups = rollups_of("esp32-a", tracker.add(eager, later))
    assert lazy_rollups == eager_rollups
    assert decode_rollup_state(encode(lazy)) == decode_rollup_state(encode(eager))
    untouched = [w for w in lazy.windows.values() if isinstance(w, msgspec.Raw)]
    # minutes 0-2 closed, 3-6 took no reading and stay encoded, 7 took one, 8 and 9 are new
    assert len(untouched) == 4, "windows that took no reading stay encoded"
    assert sorted(lazy.windows) == [
        int((T0 + timedelta(minutes=m)).timestamp()) for m in range(3, 10)
    ]


def test_a_stored_window_that_does_not_decode_quarantines_the_row_and_resets_it() -> None:
    start = int(T0.timestamp())
    bad = (
        b'{"device_id":"esp32-a","windows":{"%d":{"x":[1,null,2,3]}},"positions":{"0":[5,0]}}'
        % start
    )
    told: list[str] = []
    pending = PendingRollups(RollupTracker(grace_s=300), 5, lambda d, exc: told.append(d))
    fresh = [(item(0, 7.0), (0, 6, 0))]
    assert pending.apply("esp32-a", "event", fresh, lambda _: decode_stored(bad)) == 1
    assert told == ["esp32-a"]
    due = pending.flush()
    [(_, state)] = due.rows
    assert state.positions == {"0": (6, 0)}
    [window] = state.windows.values()
    assert window == {
        "mq134.gas_concentration": [1, 7.0, 7.0, 7.0],
        "mq134.raw_value": [1, 900, 900, 900],
    }
    assert {(r.field, r.count) for r in due.rollups} == {
        ("mq134.gas_concentration", 1),
        ("mq134.raw_value", 1),
    }

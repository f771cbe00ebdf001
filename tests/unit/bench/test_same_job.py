"""bench.baselines.same_job: the Quix peer's job per envelope (status, rollups, outputs), with a
dict for Quix's State and fixed clocks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.enrichment import Enricher
from bench.baselines.same_job import (
    Reading,
    Rules,
    apply_rollups,
    apply_status,
    flattened,
    merge_devices,
    process,
)
from bench.data import encoded_items, new_fleet, readings
from bench.fleet_sim import fleet_devices
from schemas.envelopes import raw_envelope
from schemas.events import decode_dead_letter
from schemas.status import newest_rollups

NOW = datetime(2026, 12, 7, 12, 0, 30, tzinfo=UTC)
T = NOW.timestamp()


class DictState:
    """Quix's State as the job uses it: values go through JSON, as Quix's serializer."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.stored[key]) if key in self.stored else default

    def set(self, key: str, value: Any) -> None:
        self.stored[key] = json.dumps(value)


def reading(event_id: str, ts: float, received: float, **sensors: Any) -> Reading:
    return Reading(event_id, ts, received, flattened(sensors))


def test_status_counts_first_and_last_seen_and_goes_online_once() -> None:
    first = [
        reading("a", T - 20, T - 10, equipment={"temperature": 20.0}),
        reading("b", T - 19, T - 12, equipment={"temperature": 21.0, "rpm": 900.0}),
    ]
    state, change = apply_status(None, "d1", first, NOW)
    assert state["count"] == 2
    assert (state["first_seen"], state["last_seen"], state["last_ts"]) == (T - 12, T - 10, T - 19)
    assert state["last_event_id"] == "b"
    assert state["values"] == {"equipment.temperature": 21.0, "equipment.rpm": 900.0}
    assert change is not None
    assert (change.seq, change.online, change.reason) == (1, True, "reading")
    assert change.changed_at == datetime.fromtimestamp(T - 10, UTC)

    state, again = apply_status(state, "d1", [reading("c", T, T, pir={"motion": True})], NOW)
    assert again is None
    assert state["count"] == 3
    assert list(state["values"]) == ["equipment.temperature", "equipment.rpm", "pir.motion"]


def test_status_keeps_the_most_recently_updated_values_and_no_transition_for_old_readings() -> None:
    old = [reading("a", T - 900, T - 900, s={"x": 1, "y": 2, "z": 3})]
    state, change = apply_status(None, "d1", old, NOW, Rules(max_values=2))
    assert change is None  # silent for longer than the timeout: not online
    assert list(state["values"]) == ["s.y", "s.z"]
    state, _ = apply_status(state, "d1", [reading("b", T, T, s={"y": 5})], NOW, Rules(max_values=2))
    assert state["values"] == {"s.z": 3, "s.y": 5}


def test_rollups_aggregate_per_window_and_field_and_publish_once_per_interval() -> None:
    rules = Rules(grace_s=300, publish_interval_s=30)
    start = 60 * (int(T) // 60)
    batch = [
        reading("a", start + 1, start + 2, s={"v": 3, "on": True}),
        reading("b", start + 5, start + 6, s={"v": 1.5}),
        reading("c", start + 61, start + 62, s={"v": 7}),
    ]
    state, published = apply_rollups(None, "d1", batch, wall=1000.0, rules=rules)
    assert published == []  # the first interval has not passed
    assert state["windows"] == {
        str(start): {"s.v": [2, 1.5, 3, 4.5]},
        str(start + 60): {"s.v": [1, 7, 7, 7]},
    }
    state, published = apply_rollups(
        state, "d1", [reading("d", start + 10, start + 70, s={"v": 9})], wall=1030.0, rules=rules
    )
    assert [
        (r.window_start.timestamp(), r.field, r.count, r.min, r.max, r.sum) for r in published
    ] == [
        (start, "s.v", 3, 1.5, 9, 13.5),
        (start + 60, "s.v", 1, 7, 7, 7),
    ]
    assert published[0].mean == 4.5
    assert {type(v) for r in published for v in (r.min, r.max, r.sum, r.mean)} == {float}
    assert state["touched"] == []
    state, published = apply_rollups(state, "d1", batch[:1], wall=1040.0, rules=rules)
    assert published == []  # touched again, but within the interval


def test_a_reading_received_after_the_grace_period_is_late_and_closed_windows_go() -> None:
    rules = Rules(grace_s=0)
    start = 60 * (int(T) // 60)
    state, _ = apply_rollups(None, "d1", [reading("a", start, start + 1, s={"v": 1})], 0.0, rules)
    late = reading("b", start, start + 61, s={"v": 2})
    later = reading("c", start + 300, start + 300, s={"v": 3})
    state, _ = apply_rollups(state, "d1", [late, later], 0.0, rules)
    assert state["late"] == 1
    assert list(state["windows"]) == [str(start + 300)]  # the first window closed


def test_an_envelope_gives_rows_readings_dead_letters_state_and_redis_fields() -> None:
    fleet = new_fleet(4, run="t")
    bodies = list(readings(fleet, 8, now=NOW, invalid_every=4))  # 3 and 6
    items = [item for _, item in encoded_items(bodies, NOW)]
    registry = {d.device_id: d for d in fleet_devices(fleet, NOW)[:2]}
    enricher = Enricher(registry, unknown="pass", disabled="deadletter")
    state = DictState()
    out = process(
        raw_envelope(items),
        topic="raw",
        partition=3,
        offset=7,
        now=NOW,
        wall=0.0,
        state=state,
        enricher=enricher,
    )
    assert len(out.readings) == len(out.rows) == 6
    dead = [decode_dead_letter(d) for d in out.dead]
    assert [(d.stage, d.source_topic, d.partition, d.offset) for d in dead] == [
        ("validate", "raw", 3, 7)
    ] * 2
    enriched = json.loads(out.readings[0][1])
    assert enriched["device_name"] == "device 0"
    assert json.loads(out.readings[2][1])["device_name"] is None  # not registered: passes
    row = out.rows[0].rstrip(b"\n").split(b"\x02")
    assert row[1] == fleet.devices[0].encode() and len(row) == 8
    assert sorted(c.device_id for c in out.changes) == sorted(fleet.devices)
    counts = {d: state.get(f"s:{d}")["count"] for d in fleet.devices}
    assert sum(counts.values()) == 6
    fields = out.devices[fleet.devices[0]]
    assert fields.latest["reading"] == out.readings[3][1]  # its newer reading of the two
    assert len(fields.items) == 2


def test_merging_a_checkpoint_keeps_the_last_fields_and_every_item() -> None:
    from bench.baselines.same_job import DeviceFields

    one = {"d": DeviceFields({"event_id": "a"}, {"v:x": b"1", "v:y": b"2"}, [b"A"])}
    two = {"d": DeviceFields({"event_id": "b"}, {"v:x": b"3"}, [b"B"])}
    merged = merge_devices([one, two])
    assert merged["d"].latest == {"event_id": "b"}
    assert merged["d"].status == {"v:x": b"3", "v:y": b"2"}
    assert merged["d"].items == [b"A", b"B"]
    assert one["d"].items == [b"A"]  # the envelopes' own fields are not changed


def test_newest_rollups_keep_the_highest_count_per_window() -> None:
    from bench.baselines.same_job import rollup_of

    start = 60 * (int(T) // 60)
    low, high = (
        rollup_of("d", start, "s.v", [1, 1, 1, 1]),
        rollup_of("d", start, "s.v", [2, 1, 2, 3]),
    )
    other = rollup_of("d", start + 60, "s.v", [1, 5, 5, 5])
    assert newest_rollups([high, low, other]) == [high, other]
    assert newest_rollups([low, high]) == [high]
    assert high.window_end - high.window_start == timedelta(seconds=60)

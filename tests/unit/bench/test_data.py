"""bench.data: the readings mix and envelope grouping (pure; nothing is produced)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest

from bench.data import (
    Envelope,
    encoded_items,
    group_envelopes,
    invalid_count,
    new_fleet,
    readings,
    request_bodies,
)
from connectors.kafka.partitioner import partition_for
from schemas.envelopes import decode_raw_record, raw_envelope
from schemas.errors import ValidationFailure
from schemas.validation import decode_reading

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_fleet_mixes_esp32_boards_and_machines_under_one_prefix() -> None:
    fleet = new_fleet(100, run="abc")
    assert len(fleet.devices) == 100
    assert len(fleet.equipment) == 30
    assert all(device.startswith("babc-") for device in fleet.devices)


def test_readings_mix_sensor_types_and_about_one_percent_invalid() -> None:
    fleet = new_fleet(50)
    bodies = list(readings(fleet, 5000, now=NOW))
    invalid = 0
    kinds: Counter[str] = Counter()
    for body in bodies:
        try:
            reading = decode_reading(msgspec.json.encode(body), now=NOW)
        except ValidationFailure:
            invalid += 1
            continue
        kinds.update(
            name
            for name in ("ld2410", "pir", "mq134", "equipment")
            if getattr(reading.sensors, name) is not None
        )
    assert invalid == invalid_count(5000, 50) == 50
    assert set(kinds) == {"ld2410", "pir", "mq134", "equipment"}


def test_invalid_readings_are_spread_over_devices() -> None:
    fleet = new_fleet(20)
    bad_devices = {body["device_id"] for body in readings(fleet, 4000, now=NOW) if not _valid(body)}
    assert len(bad_devices) == 20


def _valid(body: dict[str, object]) -> bool:
    try:
        decode_reading(msgspec.json.encode(body), now=NOW)
    except ValidationFailure:
        return False
    return True


def test_http_readings_can_be_all_valid() -> None:
    fleet = new_fleet(10)
    assert all(_valid(body) for body in readings(fleet, 500, invalid_every=None, now=NOW))
    assert invalid_count(500, 10, None) == 0


def test_envelopes_hold_only_items_of_their_partition_in_order() -> None:
    fleet = new_fleet(40)
    items = list(encoded_items(readings(fleet, 1000, now=NOW), NOW))
    envelopes = list(group_envelopes(items, 8, max_items=30))
    assert sum(len(e.items) for e in envelopes) == 1000
    assert all(1 <= len(e.items) <= 30 for e in envelopes)
    position = {item: n for n, (_, item) in enumerate(items)}
    device_of = dict((item, device) for device, item in items)
    last_seen: dict[str, int] = {}
    for envelope in envelopes:
        for item in envelope.items:
            device = device_of[item]
            assert partition_for(device, 8) == envelope.partition
            assert position[item] > last_seen.get(device, -1)  # per-device order kept
            last_seen[device] = position[item]


def test_envelopes_respect_the_byte_cap_and_decode_as_raw_envelopes() -> None:
    fleet = new_fleet(3)
    items = list(encoded_items(readings(fleet, 60, now=NOW, invalid_every=None), NOW))
    biggest = max(len(item) for _, item in items)
    envelopes = list(group_envelopes(items, 2, max_items=1000, max_bytes=4 * biggest))
    assert all(sum(len(i) + 1 for i in e.items) <= 4 * biggest for e in envelopes)
    record = decode_raw_record(
        raw_envelope(envelopes[0].items), record_id="t/0/0", record_time=NOW, format_header=None
    )
    assert len(record.events) == len(envelopes[0].items)
    assert not record.failures


def test_group_envelopes_refuses_an_empty_cap() -> None:
    with pytest.raises(ValueError):
        list(group_envelopes([], 8, max_items=0))
    assert list(group_envelopes([], 8, max_items=5)) == []
    assert Envelope(1, [b"x"]).partition == 1


def test_request_bodies_single_objects_or_arrays() -> None:
    fleet = new_fleet(2)
    bodies = list(readings(fleet, 5, invalid_every=None, now=NOW))
    assert [msgspec.json.decode(b)["device_id"] for b in request_bodies(bodies, 1)] == [
        body["device_id"] for body in bodies
    ]
    arrays = [msgspec.json.decode(b) for b in request_bodies(bodies, 2)]
    assert [len(a) for a in arrays] == [2, 2, 1]

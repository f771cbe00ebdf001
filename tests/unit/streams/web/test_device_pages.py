"""The operator's device list, paged by cursor over several workers and the registry.

The walk through every page is compared with the answer worked out by brute force from the
whole fleet: a merge that drops a worker's row, repeats a device across pages, lists a device
with a state as "never seen", or a filter applied on one side only makes it fail.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from connectors.kafka.partitioner import partition_for
from schemas.devices import Device
from schemas.status import DeviceState, encode
from streams.tables import DEVICE_STATUS
from streams.web.device_pages import DeviceFilter, FilterError, device_page
from streams.web.devices import COUNT_CHUNK, local_counts, scan
from tests.clock import FROZEN_AT

PARTITIONS = 8
WORKERS = (frozenset({0, 3, 6}), frozenset({1, 4, 7}), frozenset({2, 5}))
HASH = "0" * 64


def _device(device_id: str, n: int) -> Device:
    return Device(
        device_id=device_id,
        token_hash=HASH,
        name=f"Room {n % 97}",
        profile="radar" if n % 2 else "gas",
        tags=["lobby"] if n % 5 == 0 else [],
        created_at=FROZEN_AT,
        updated_at=FROZEN_AT,
    )


def _state(device_id: str, online: bool) -> bytes:
    at = datetime.fromtimestamp(FROZEN_AT.timestamp(), UTC)
    return encode(
        DeviceState(
            device_id=device_id, first_seen=at, last_seen=at, last_ts=at, last_event_id="e",
            count=1, online=online,
        )
    )  # fmt: skip


class Fleet:
    """Devices 0..n-1: every 7th unregistered (seen, not in the registry), every 4th never
    seen; the seen ones online when n % 3."""

    def __init__(self, size: int) -> None:
        ids = [f"dev-{n:06d}" for n in range(size)]
        self.registry = {d: _device(d, n) for n, d in enumerate(ids) if n % 7}
        self.online = {d: bool(n % 3) for n, d in enumerate(ids) if n % 4}
        self.items = [(d.encode(), _state(d, online)) for d, online in self.online.items()]

    def page(self, wanted: DeviceFilter) -> dict[str, Any]:
        answers = []
        for active in WORKERS:
            local = scan(self.items, PARTITIONS, active, wanted, self.registry)
            answers.append({"matches": local.matches, "devices": {"more": local.more}})
        return device_page(answers, self.registry, wanted)

    def walk(self, wanted: DeviceFilter) -> list[tuple[str, str]]:
        listed: list[tuple[str, str]] = []
        while True:
            page = self.page(wanted)
            listed += [(row["device_id"], row["status"]) for row in page["items"]]
            if page["next"] is None:
                return listed
            wanted = replace(wanted, after=page["next"])

    def expected(self, wanted: DeviceFilter) -> list[tuple[str, str]]:
        every = set(self.registry) | set(self.online)
        rows = []
        for device_id in sorted(d for d in every if d > wanted.after):
            known = self.registry.get(device_id)
            seen = self.online.get(device_id)
            status = "never seen" if seen is None else "online" if seen else "offline"
            if wanted.status not in (None, status) or not wanted.admits(device_id, known):
                continue
            rows.append((device_id, status))
        return rows


FILTERS = [
    DeviceFilter(limit=37),
    DeviceFilter(status="online", limit=50),
    DeviceFilter(status="offline", limit=500),
    DeviceFilter(status="never seen", limit=23),
    DeviceFilter(tag="lobby", limit=40),
    DeviceFilter(profile="radar", status="offline", limit=64),
    DeviceFilter(search="room 9", limit=11),  # the registry name, case-insensitive
    DeviceFilter(search="00012", limit=3),
]


@pytest.mark.parametrize("wanted", FILTERS, ids=lambda f: str(f.as_query()))
def test_walking_every_page_lists_each_matching_device_once_in_order(wanted: DeviceFilter) -> None:
    fleet = Fleet(3_000)
    expected = fleet.expected(wanted)
    assert expected, "a filter that matches nothing would prove nothing"
    assert fleet.walk(wanted) == expected


def test_a_page_of_a_100k_device_fleet_is_the_first_of_its_matches() -> None:
    fleet = Fleet(100_000)
    wanted = DeviceFilter(status="never seen", tag="lobby", after="dev-050000", limit=100)
    page = fleet.page(wanted)
    assert [(row["device_id"], row["status"]) for row in page["items"]] == (
        fleet.expected(wanted)[:100]
    )
    assert page["next"] == page["items"][-1]["device_id"]
    assert all(row["registered"] and row["name"] for row in page["items"])


def test_partition_spread_of_the_fixture_covers_every_worker() -> None:
    fleet = Fleet(200)
    owners = {next(i for i, w in enumerate(WORKERS) if partition_for(d, PARTITIONS) in w)
              for d in fleet.online}  # fmt: skip
    assert owners == {0, 1, 2}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "asleep"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"q": "x" * 129}, "q"),
        ({"after": "x" * 129}, "after"),
    ],
)
def test_a_bad_filter_names_its_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(FilterError) as caught:
        DeviceFilter.from_query(query)
    assert caught.value.field == field


def test_a_filter_survives_the_trip_through_the_query_string() -> None:
    wanted = DeviceFilter(search="a", status="never seen", tag="t", after="x", limit=7)
    assert DeviceFilter.from_query(wanted.as_query()) == wanted


class _CountingApp:
    """What ``local_counts`` reads of a Faust app: a ready table and this worker's partitions."""

    def __init__(self, fleet: Fleet, active: frozenset[int]) -> None:

        ready = asyncio.Event()
        ready.set()
        table = SimpleNamespace(
            items=lambda: iter(fleet.items),
            changelog_topic=SimpleNamespace(partitions=PARTITIONS, get_topic_name=lambda: "cl"),
        )
        self.rebalancing = False
        self.conf = SimpleNamespace(topic_partitions=PARTITIONS)
        self.tables = _Tables({DEVICE_STATUS: table}, recovery=SimpleNamespace(
            in_recovery=False, completed=ready))  # fmt: skip
        parts = [SimpleNamespace(topic="curated", partition=p) for p in sorted(active)]
        self.assignor = SimpleNamespace(assigned_actives=lambda: parts)


class _Tables(dict[str, Any]):
    def __init__(self, tables: dict[str, Any], recovery: Any) -> None:
        super().__init__(tables)
        self.recovery = recovery


async def test_a_timer_counts_a_large_table_a_chunk_per_turn_of_the_event_loop() -> None:
    fleet = Fleet(3 * COUNT_CHUNK)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    try:
        counts = []
        for active in WORKERS:
            before = turns
            local = await local_counts(cast(Any, _CountingApp(fleet, active)), "curated")
            assert local is not None
            counts.append((local.online, local.offline))
            assert turns - before >= 2, "other tasks ran while the table was counted"
    finally:
        other.cancel()
    online = sum(fleet.online.values())
    assert tuple(map(sum, zip(*counts, strict=True))) == (online, len(fleet.online) - online)

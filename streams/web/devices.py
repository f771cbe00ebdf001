"""Device status for the views: this worker's part of the status table, and the transitions.

The ``device-status`` table (``agents.status``) is partitioned like ``fleet.curated.v1``; each
worker answers for the partitions it owns (its *active* partitions: standby copies may lag), and
the views ask every worker for its part. A single device is looked up on the worker that owns
its key (``streams.web.cluster``). While the worker joins the group or recovers the table, the
table is not ready: views answer 503 ``recovering`` rather than a wrong "unknown".

Transitions (online/offline) come from the compacted ``fleet.device-status.v1``: the newest
records of the device's partition are read back and filtered; compaction keeps at least the
latest transition of every device.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import msgspec
from confluent_kafka import TopicPartition

from connectors.kafka.partitioner import partition_for
from connectors.kafka.range_reader import read_range, tool_consumer
from schemas.contract_wire import decode_status
from schemas.devices import Device
from schemas.status import (
    DeviceState,
    StatusChange,
    decode_device_state,
    state_is_online,
)
from streams.tables import DEVICE_STATUS as TABLE
from streams.web.device_pages import DeviceFilter

HISTORY_SCAN = 20_000
"""Records of the device's status partition read back for its transitions (newest first)."""


def table_ready(app: faust.App) -> bool:
    """False while the worker joins its group or recovers its tables."""
    recovery = cast(Any, app.tables).recovery
    return bool(not app.rebalancing and not recovery.in_recovery and recovery.completed.is_set())


def assigned(app: faust.App) -> dict[str, list[int]]:
    """This worker's active partitions per topic (changelogs and Faust's leader topic excluded)."""
    changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    topics: dict[str, list[int]] = {}
    for tp in app.assignor.assigned_actives():
        if tp.topic not in changelogs and "__assignor-__leader" not in tp.topic:
            topics.setdefault(tp.topic, []).append(tp.partition)
    return {topic: sorted(partitions) for topic, partitions in sorted(topics.items())}


def state_json(state: DeviceState) -> dict[str, Any]:
    return {
        "device_id": state.device_id,
        "online": state.online,
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "last_ts": state.last_ts,
        "last_event_id": state.last_event_id,
        "count": state.count,
        "seq": state.seq,
        "changed_at": state.changed_at,
        "last_values": state.last_values,
    }


@dataclass
class LocalDevices:
    """What one worker's partitions of the table hold: counts, and one page of matches."""

    online: int = 0
    offline: int = 0
    matches: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False


def scan(
    items: Iterable[tuple[bytes, bytes]],
    partitions: int,
    active: frozenset[int],
    wanted: DeviceFilter | None,
    registry: Mapping[str, Device],
) -> LocalDevices:
    """Count online/offline devices of the ``active`` partitions; with a filter, the first
    ``wanted.limit`` matches after its cursor: states, or for "never seen" the registered
    devices of these partitions without one."""
    found = LocalDevices()
    candidates: list[tuple[str, bytes]] = []
    held: set[str] = set()
    for key, value in items:
        device_id = key.decode("utf-8", "replace")
        if partition_for(device_id, partitions) not in active:
            continue
        online = state_is_online(value)
        if online:
            found.online += 1
        else:
            found.offline += 1
        if wanted is None:
            continue
        held.add(device_id)
        if (
            device_id > wanted.after
            and wanted.admits_state(online)
            and wanted.admits(device_id, registry.get(device_id))
        ):
            candidates.append((device_id, value))
    if wanted is None:
        return found
    if wanted.status == "never seen":
        unseen = heapq.nsmallest(
            wanted.limit + 1,
            (
                device_id
                for device_id, device in registry.items()
                if device_id > wanted.after
                and device_id not in held
                and wanted.admits(device_id, device)
                and partition_for(device_id, partitions) in active
            ),
        )
        found.matches = [{"device_id": device_id, "never_seen": True} for device_id in unseen]
    else:
        page = heapq.nsmallest(wanted.limit + 1, candidates, key=lambda pair: pair[0])
        found.matches = [state_json(decode_device_state(value)) for _, value in page]
    found.more = len(found.matches) > wanted.limit
    del found.matches[wanted.limit :]
    return found


def local_devices(
    app: faust.App, curated_topic: str, wanted: DeviceFilter | None, registry: Mapping[str, Device]
) -> LocalDevices | None:
    """This worker's part of the table, or None while it is not ready."""
    if not table_ready(app):
        return None
    table = cast(Any, app.tables[TABLE])
    active = frozenset(assigned(app).get(curated_topic, []))
    partitions = table.changelog_topic.partitions or app.conf.topic_partitions
    return scan(list(table.items()), partitions, active, wanted, registry)


COUNT_CHUNK = 5_000
"""Rows counted between two turns of the event loop (~5 ms): a timer counting a 100,000-device
table at once held the worker's loop for ~100 ms."""


async def local_counts(app: faust.App, curated_topic: str) -> LocalDevices | None:
    """Online and offline devices of this worker's part of the table, counted a chunk of rows
    per turn of the event loop (for timers; a request's page uses :func:`local_devices`)."""
    if not table_ready(app):
        return None
    table = cast(Any, app.tables[TABLE])
    active = frozenset(assigned(app).get(curated_topic, []))
    partitions = table.changelog_topic.partitions or app.conf.topic_partitions
    rows = list(table.items())
    counted = LocalDevices()
    for start in range(0, len(rows), COUNT_CHUNK):
        chunk = scan(rows[start : start + COUNT_CHUNK], partitions, active, None, {})
        counted.online += chunk.online
        counted.offline += chunk.offline
        await asyncio.sleep(0)
    return counted


def local_state(app: faust.App, device_id: str) -> DeviceState | None:
    value = cast(Any, app.tables[TABLE]).get(device_id.encode())
    return None if value is None else decode_device_state(value)


def owns(app: faust.App, curated_topic: str, device_id: str) -> bool:
    """Whether this worker holds the device's partition as active."""
    partitions = app.conf.topic_partitions
    return partition_for(device_id, partitions) in assigned(app).get(curated_topic, [])


def transitions(
    bootstrap_servers: str, topic: str, device_id: str, limit: int = 50
) -> list[StatusChange]:
    """The device's transitions still on ``topic``, newest first (blocking: use a thread)."""
    consumer = tool_consumer(bootstrap_servers, "ops-status")
    try:
        metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return []
        partition = partition_for(device_id, len(metadata.partitions))
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
        start = {partition: max(low, high - HISTORY_SCAN)}
        key = device_id.encode()
        found: list[StatusChange] = []
        for message in read_range(consumer, topic, start, {partition: high}, stall_s=10.0):
            if message.key() == key and message.value() is not None:
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    found.append(decode_status(message.value() or b""))
        found.sort(key=lambda change: change.seq, reverse=True)
        return found[:limit]
    finally:
        consumer.close()

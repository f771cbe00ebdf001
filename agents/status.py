"""Device status: a Faust Table keyed by device_id, and the online/offline transitions.

The ``device-state`` agent (``agents.device_state``) hands every batch of ``fleet.curated.v1``
it read to :meth:`DeviceStatus.apply`, which, per device, updates one
:class:`~schemas.status.DeviceState` (first/last seen, last event id, reading count, last value
per sensor field), one table write per device per batch. With
``FLEET_STREAM__HOLD_STATUS_ROWS`` (off by default, decision 40) only a state whose device came
online is written at once; the others are held in memory (``agents.held_rows``) and written by
the rollups' tick of the device's slot, before that tick acks the batches. A timer on every
worker marks the devices of its active partitions offline once they were silent for their
inactivity timeout (the registry's ``inactivity_timeout_s``, else
``FLEET_STREAM__INACTIVITY_TIMEOUT_S``); their next recent reading brings them back online.

A device keeps the last values of at most ``FLEET_STREAM__STATUS_MAX_VALUES`` fields: past it,
the least recently updated are dropped (and counted in ``values_dropped``), so a device
inventing field names churns its own row but cannot grow it past
:func:`~schemas.status.status_row_max_bytes`, and the fields it still sends always show.

Exactly-once transitions on at-least-once delivery:

1. a transition gets the next ``seq`` of its device and is **published first** (acked by the
   broker) on the compacted ``fleet.device-status.v1``;
2. then the new state, holding that ``seq``, is written to the table: its changelog record is
   produced and acked first, then the local store is updated (``agents.changelog``);
3. then the batch's events are acked, by the rollups' tick that has written the rollups and
   the held states of every device in the batch.

A crash before 2 leaves the old ``seq`` in the table, so the replayed batch (or the timer)
publishes the same transition with the same ``seq`` again; consumers apply a ``seq`` only once
(the Redis sink does so atomically). A crash after 2 finds the transition in the recovered
state, so it is not published again. Repeated readings (a raw record validated twice) are
dropped by position (``agents.curated``), so counts do not drift either. One lock orders the
batch step and the timer, so they never hand out the same ``seq``.

While the table recovers (after a start or a rebalance) the timer does nothing and the web view
answers 503 "recovering" instead of a wrong default.

A device deleted from the registry (a tombstone on ``fleet.devices.v1``) loses its live state:
the timer publishes a tombstone for it on ``fleet.device-status.v1`` (the Redis sink deletes its
hashes) and deletes its row, so an id registered again starts as never seen. Its readings,
rollups and alerts stay: they are history.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import msgspec

from agents.changelog import Quarantine, TableRows
from agents.curated import (
    ITEMS_PER_TURN,
    TABLE_WRITE_ITEMS,
    Batch,
    Item,
    LastValues,
    Turns,
    new_items,
)
from agents.held_rows import HeldRows
from connectors.kafka.partitioner import partition_for
from connectors.kafka.producer import Record
from schemas.contract_wire import encode_status
from schemas.status import (
    STATUS_MAX_VALUES,
    DeviceState,
    StatusChange,
    decode_device_state,
    encode,
)
from streams import tables
from streams.context import WorkerContext, stop_worker
from streams.outputs import Outputs

log = logging.getLogger(__name__)


TABLE = tables.DEVICE_STATUS
DELETED_KEPT_S = 3600.0
"""How long a registry deletion is acted on (:meth:`DeviceStatus.forget_deleted`)."""


@dataclass
class StatusTracker:
    """The status rules for one device at a time, without Faust (unit-tested on their own)."""

    default_timeout_s: int
    timeout_of: Callable[[str], int | None] = lambda device_id: None
    max_values: int = STATUS_MAX_VALUES
    """Fields kept in ``last_values`` (``FLEET_STREAM__STATUS_MAX_VALUES``)."""

    def timeout_for(self, device_id: str) -> int:
        return self.timeout_of(device_id) or self.default_timeout_s

    def apply(
        self, state: DeviceState | None, device_id: str, items: list[Item], now: datetime
    ) -> tuple[DeviceState, StatusChange | None]:
        """``state`` after ``items`` (new ones only, in order), and the transition if any."""
        first = items[0]
        if state is None:
            state = DeviceState(
                device_id=device_id,
                first_seen=first.received_at,
                last_seen=first.received_at,
                last_ts=first.ts,
                last_event_id=first.event_id,
                count=0,
            )
        last_values = LastValues()
        last_seen, first_seen, last_ts = state.last_seen, state.first_seen, state.last_ts
        for item in items:
            received = item.received_at
            if received > last_seen:
                last_seen = received
            elif received < first_seen:
                first_seen = received
            if item.ts > last_ts:
                last_ts = item.ts
            last_values.add(item.sensors)
        state.count += len(items)
        state.last_event_id = items[-1].event_id
        state.last_seen, state.first_seen, state.last_ts = last_seen, first_seen, last_ts
        state.last_values, dropped = _merged(
            state.last_values, last_values.flattened(), self.max_values
        )
        state.values_dropped += dropped
        if state.online:
            return state, None  # already online: no transition
        timeout_s = self.timeout_for(device_id)
        if (now - state.last_seen).total_seconds() >= timeout_s:
            return state, None  # only old readings: no transition
        at = first.received_at  # the first reading after the silence: the same on every replay
        return state, self._transition(state, at, at, online=True, timeout_s=timeout_s)

    def expire(self, state: DeviceState, now: datetime) -> StatusChange | None:
        """The offline transition of a device silent for its timeout (``state`` updated)."""
        timeout_s = self.timeout_for(state.device_id)
        if not state.online or (now - state.last_seen).total_seconds() < timeout_s:
            return None
        overdue = state.last_seen + timedelta(seconds=timeout_s)
        return self._transition(state, overdue, state.last_seen, online=False, timeout_s=timeout_s)

    @staticmethod
    def _transition(
        state: DeviceState, at: datetime, last_seen: datetime, *, online: bool, timeout_s: int
    ) -> StatusChange:
        """The next ``seq``, stamped from the readings, not from the clock that found it: a
        transition published again after a crash is the same record (decision 42)."""
        state.seq += 1
        state.online = online
        state.changed_at = at
        return StatusChange(
            device_id=state.device_id,
            seq=state.seq,
            online=online,
            reason="reading" if online else "timeout",
            changed_at=at,
            last_seen=last_seen,
            timeout_s=timeout_s,
        )


def _merged(
    kept: dict[str, Any], updates: Iterable[tuple[str, Any]], most: int
) -> tuple[dict[str, Any], int]:
    """``kept`` (least recently updated first) with ``updates``, which move to the end, cut to
    the ``most`` recently updated names; and how many names were cut. ``kept`` is updated in
    place (it is the state's own, about to be replaced): no copy per device and batch."""
    merged = kept
    for name, value in updates:
        merged.pop(name, None)
        merged[name] = value
    excess = len(merged) - most
    if excess <= 0:
        return merged, 0
    for name in list(itertools.islice(merged, excess)):
        del merged[name]
    return merged, excess


@dataclass
class _PartitionEvent:
    """Stands in for "the current event" when the timer writes to a partition's changelog."""

    message: Any


@dataclass
class _Message:
    topic: str
    partition: int


class Live(Protocol):
    """What the deadlines read of a status row (a whole one, or only these fields)."""

    @property
    def device_id(self) -> str: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def online(self) -> bool: ...


class Deadlines:
    """When each online device of this worker's active partitions goes offline (epoch s).

    A heap of ``(deadline, device)`` beside the current deadline of each device, so the timer
    looks only at the devices that are due, not at the whole fleet. A device noted again
    leaves its older entry in the heap, skipped when it comes up (and dropped when the heap
    is rebuilt, once it holds more than twice the devices)."""

    def __init__(self, partitions: frozenset[int] | None = None) -> None:
        self.by_device: dict[str, float] = {}
        self.partitions = partitions
        self._heap: list[tuple[float, str]] = []

    def note(self, state: Live, timeout_s: int) -> None:
        device_id = state.device_id
        if not state.online:
            self.by_device.pop(device_id, None)
            return
        deadline = state.last_seen.timestamp() + timeout_s
        if self.by_device.get(device_id) == deadline:
            return
        self.by_device[device_id] = deadline
        heapq.heappush(self._heap, (deadline, device_id))
        if len(self._heap) > 2 * len(self.by_device) + _HEAP_SLACK:
            self._rebuild()

    def forget(self, device_id: str) -> None:
        self.by_device.pop(device_id, None)

    def due(self, now: float) -> list[str]:
        """The devices whose deadline is ``now`` or earlier. They stay due until they are
        noted again (a later deadline, or offline) or forgotten."""
        heap, by_device = self._heap, self.by_device
        due: list[str] = []
        while heap and heap[0][0] <= now:
            deadline, device_id = heapq.heappop(heap)
            if by_device.get(device_id) == deadline and (not due or due[-1] != device_id):
                due.append(device_id)
        for device_id in due:
            heapq.heappush(heap, (by_device[device_id], device_id))
        return due

    def _rebuild(self) -> None:
        self._heap = [(deadline, device) for device, deadline in self.by_device.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self.by_device)


_HEAP_SLACK = 1024
"""Stale heap entries tolerated before a rebuild, whatever the fleet's size."""


class _Liveness(msgspec.Struct):
    """What the deadlines need of a status row: decoded without its values and positions."""

    device_id: str
    last_seen: datetime
    online: bool = False


_liveness_decoder = msgspec.json.Decoder(_Liveness)


class DeviceStatus:
    """The agent, the timer and the web view around one table."""

    def __init__(self, ctx: WorkerContext) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.app = ctx.app
        self.curated_topic = settings.topics.curated
        self.status_topic = settings.topics.device_status
        self.partitions = settings.kafka.partitions
        self.table = ctx.app.Table(
            TABLE,
            key_type=bytes,  # raw bytes both ways: Faust derives the serializer from the type
            value_type=bytes,
            partitions=self.partitions,
            store=_store_url(settings.stream.table_store),
            help="device status: first/last seen, counts, last values, online, seq",
        )
        self.tracker = StatusTracker(
            settings.stream.inactivity_timeout_s,
            self._registry_timeout,
            max_values=settings.stream.status_max_values,
        )
        self.deadlines = Deadlines()
        self.held: HeldRows[DeviceState] = HeldRows()
        """States applied since their row was written: written by the rollups' ticks (only
        with ``FLEET_STREAM__HOLD_STATUS_ROWS``; otherwise every state is written per batch)."""
        self.hold_rows = settings.stream.hold_status_rows
        self.deadletter_topic = settings.topics.deadletter
        self.quarantine = Quarantine(self.table, ctx.clock)
        self.lock = asyncio.Lock()

    def _registry_timeout(self, device_id: str) -> int | None:
        device = self.ctx.device_cache().get(device_id)
        return None if device is None else device.inactivity_timeout_s

    def state(self, device_id: str) -> DeviceState | None:
        """The device's state: held (applied, not written yet), else the table's row."""
        held = self.held.get(device_id)
        if held is not None:
            return held
        key = device_id.encode()
        return self.quarantine.decode(key, self.table.get(key), decode_device_state)

    async def apply(self, events: list[Any], batch: Batch, now: datetime, turn: Turns) -> None:
        """The batch's new readings into the states of its devices (``agents.device_state``
        read the batch). A state whose device came online is written now, after its transition;
        the others are held for the rollups' tick of their slot (``agents.held_rows``), which
        acks the batch once the rollups and the states of all its devices are written."""
        writes: list[tuple[Any, DeviceState]] = []
        async with self.lock:
            outputs = Outputs()
            for device_id, entry in batch.devices.items():
                state = self.state(device_id)
                applied = dict(state.positions) if state is not None else {}
                items = new_items(entry.items, applied)
                if not items:
                    continue
                state, change = self.tracker.apply(state, device_id, items, now)
                state.positions = applied
                event = events[entry.message_index]
                if change is not None or not self.hold_rows:
                    if change is not None:
                        outputs.add(self.status_topic, _record(change))
                    self.held.release(device_id)
                    writes.append((event, state))
                else:
                    self.held.hold(device_id, event, state)
                    self.deadlines.note(state, self.tracker.timeout_for(device_id))
                await turn.took(len(items))
            outputs.extend(self.deadletter_topic, self.quarantine.take())
            await self.ctx.publish(outputs)
            await self._write(writes, turn)

    async def write_held(self, slot: int | None) -> None:
        """Write the held states of ``slot`` (None: all): the rollups' tick, before it acks."""
        async with self.lock:
            held = self.held.take(slot)
            if held:
                await self._write(held, Turns(ITEMS_PER_TURN))

    async def forget_deleted(self) -> None:
        """Timer body: drop the state of devices deleted from the registry (those of our active
        partitions that still have a row). A tombstone on the status topic first (the Redis sink
        deletes the device's hashes; a device registered again starts unseen), then the row.
        Deletions are looked at for DELETED_KEPT_S, so a reading still in flight when the device
        was deleted cannot leave its state behind for good."""
        cache = self.ctx.device_cache()
        if not cache.caught_up or not self._table_ready():
            return
        deleted = cache.deleted(DELETED_KEPT_S)
        if not deleted:
            return
        active = self._active_partitions()
        async with self.lock:
            gone = [
                device_id
                for device_id in deleted
                if partition_for(device_id, self.partitions) in active
                and (self.table.get(device_id.encode()) is not None or self.held.get(device_id))
                and cache.get(device_id) is None  # not registered again meanwhile
            ]
            if not gone:
                return
            outputs = Outputs()
            outputs.extend(self.status_topic, [Record(d.encode(), None) for d in gone])
            await self.ctx.publish(outputs)
            rows = TableRows(self.table)
            for device_id in gone:
                rows.add(self._partition_event(device_id), device_id.encode(), None)
                self.held.release(device_id)
                self.deadlines.forget(device_id)
            await rows.write(self.ctx.publish)
        log.info("dropped the status of %d deleted devices", len(gone))

    async def expire_silent(self) -> None:
        """Timer body: offline transitions for the silent devices of our active partitions."""
        if not self._table_ready():
            return
        active = self._active_partitions()
        if active != self.deadlines.partitions:
            async with self.lock:
                await self._index(active)
        now = self.ctx.clock()
        due = self.deadlines.due(now.timestamp())
        if not due:
            return
        async with self.lock:
            outputs = Outputs()
            writes: list[DeviceState] = []
            for device_id in due:
                state = self.state(device_id)
                if state is None or partition_for(device_id, self.partitions) not in active:
                    self.deadlines.forget(device_id)
                    continue
                change = self.tracker.expire(state, now)
                if change is None:  # a registry timeout grew: look again later
                    self.deadlines.note(state, self.tracker.timeout_for(device_id))
                    continue
                outputs.add(self.status_topic, _record(change))
                self.held.release(device_id)
                writes.append(state)
            outputs.extend(self.deadletter_topic, self.quarantine.take())
            await self.ctx.publish(outputs)
            await self._write([(self._partition_event(state.device_id), state) for state in writes])
        if writes:
            log.info("%d devices went offline", len(writes))

    async def _write(
        self, writes: list[tuple[Any, DeviceState]], turn: Turns | None = None
    ) -> None:
        """The new states into the table: changelog records acked first (``agents.changelog``),
        then the local store, then the offline deadlines."""
        rows = TableRows(self.table)
        for event, state in writes:
            rows.add(event, state.device_id.encode(), encode(state))
            if turn is not None:
                await turn.took(TABLE_WRITE_ITEMS)
        await rows.write(self.ctx.publish)
        for _, state in writes:
            self.deadlines.note(state, self.tracker.timeout_for(state.device_id))

    def _partition_event(self, device_id: str) -> _PartitionEvent:
        """The timer's stand-in event for the partition of ``device_id``."""
        return _PartitionEvent(
            _Message(self.curated_topic, partition_for(device_id, self.partitions))
        )

    def _table_ready(self) -> bool:
        recovery = cast(Any, self.app.tables).recovery
        return bool(
            not self.app.rebalancing and not recovery.in_recovery and recovery.completed.is_set()
        )

    def _active_partitions(self) -> frozenset[int]:
        return frozenset(
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.curated_topic
        )

    async def _index(self, active: frozenset[int]) -> None:
        """Follow a rebalance: forget the devices of partitions no longer ours, and index the
        online devices of the partitions that are new to us (the others' deadlines stay), a
        few ms of work per turn of the event loop. Under the lock: no batch writes meanwhile."""
        deadlines, partitions = self.deadlines, self.partitions
        added = active - deadlines.partitions if deadlines.partitions is not None else active
        turn = Turns(INDEX_UNITS_PER_TURN)
        for device_id in list(deadlines.by_device):
            if partition_for(device_id, partitions) not in active:
                deadlines.forget(device_id)
            await turn.took()
        deadlines.partitions = active
        if added:
            for key, value in _items(self.table):
                device_id = key.decode()
                if partition_for(device_id, partitions) in added:
                    self._index_row(key, value)
                    await turn.took(INDEX_ROW_UNITS)
                await turn.took()
        log.info(
            "status timer: %d online devices on partitions %s (%d newly indexed)",
            len(deadlines),
            sorted(active),
            len(added),
        )

    def _index_row(self, key: bytes, value: bytes) -> None:
        row = self.quarantine.decode(key, value, _liveness_decoder.decode)
        if row is not None and row.online:
            timeout_s = self.tracker.timeout_for(row.device_id)
            self.deadlines.note(row, timeout_s)


INDEX_UNITS_PER_TURN = 10 * ITEMS_PER_TURN
"""Units of index work between two turns of the event loop: a key looked at is one, a row
decoded ``INDEX_ROW_UNITS`` (a few ms of work per turn)."""
INDEX_ROW_UNITS = 10


def _items(table: Any) -> Iterable[tuple[bytes, bytes]]:
    return list(table.items())


def _record(change: StatusChange) -> Record:
    return Record(change.device_id.encode(), encode_status(change))


def _store_url(store: str) -> str:
    return "rocksdb://" if store == "rocksdb" else "memory://"


def register_timer(ctx: WorkerContext, status: DeviceStatus) -> None:
    """The offline timer and the web view around ``status`` (its agent: ``agents.device_state``)."""
    settings = ctx.settings

    async def expire_silent_devices() -> None:
        try:
            await status.forget_deleted()
            await status.expire_silent()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - like an agent: stop, do not go on half-done
            stop_worker("device-status timer", exc)

    timer = cast(Callable[[Any], Any], ctx.app.timer(settings.stream.status_check_interval_s))
    timer(expire_silent_devices)

    _web_view(ctx, status)


def _web_view(ctx: WorkerContext, status: DeviceStatus) -> None:
    app = ctx.app

    @app.page("/devices/{device_id}/status/")
    @app.table_route(table=status.table, match_info="device_id")
    async def device_status_view(web: Any, request: Any, device_id: str) -> Any:
        if not status._table_ready():
            return web.json({"status": "recovering"}, status=503)
        state = status.state(device_id)
        if state is None:
            return web.json({"device_id": device_id, "status": "unknown"}, status=404)
        return web.json(_state_json(state))


def _state_json(state: DeviceState) -> dict[str, Any]:
    return {
        "device_id": state.device_id,
        "online": state.online,
        "first_seen": state.first_seen.isoformat(),
        "last_seen": state.last_seen.isoformat(),
        "last_event_id": state.last_event_id,
        "count": state.count,
        "seq": state.seq,
        "last_values": state.last_values,
    }

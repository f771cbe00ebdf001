"""Rollups: 1-minute tumbling windows per device and sensor field (count, min, max, mean).

The ``device-state`` agent (``agents.device_state``) hands every batch of ``fleet.curated.v1``
it read to :meth:`Rollups.apply`, which adds each new reading (repeats are dropped by position,
``agents.curated``) to the window of its timestamp, in the device's row of a Faust Table. It
publishes a device's touched windows (their whole aggregates, one record per field and window)
to ``fleet.readings-1m.v1`` once per ``FLEET_STREAM__ROLLUP_PUBLISH_INTERVAL_S`` (30 s), then
writes the device's row, and acks a batch once every device in it was written
(:class:`PendingRollups`).

Why ticks, not a publish per batch: records must go out seconds apart per device for their
rate to follow the fleet, not the reading rate, and a batch seconds long would do all its work
at once while the readings behind it wait (decision 27). So readings are applied in short
batches as they come, and each tick (a fifth of the interval) publishes and writes the devices
of one slot (a hash of the device id): the work per second stays even.

Delivery: a reading's offset is committed only after its device's row (with the positions it
applied) is in the changelog, and rollup records go out before that row; a crash replays the
unacked batches against the last written rows. When the worker stops or its partitions are
reassigned, Faust waits for every batch it handed out to be acked, so then every pending device
is written at once and every batch acked.

A reading is *late* when the edge received it more than ``FLEET_STREAM__ROLLUP_GRACE_S`` after
its window ended: it stays in ``readings`` but is in no rollup. Deciding on ``received_at``
(fixed at the edge) instead of the worker's clock makes the decision the same on every replay.

A device's row is bounded (:func:`~schemas.status.rollup_row_max_bytes`), since a device names
its own generic fields: a window rolls up at most ``FLEET_STREAM__ROLLUP_MAX_FIELDS`` fields
(the first it saw; values of further fields are counted in the row's ``dropped_fields``), and a
row holds at most ``FLEET_STREAM__ROLLUP_MAX_WINDOWS`` windows: past it, closed windows go first,
then the oldest gives way to a newer one, and a reading whose window would be older than all of
them is counted instead. The settings make the bound cover the windows the grace period and the
edge's clock skew keep open, so only a device whose clock runs far ahead (the worker takes up to
a day: MQTT, producers of the raw topic) gives up windows early, and only its own.

The ``sink-rollups`` sink (its own consumer group, ``agents.sink_group``) upserts those records
into Postgres ``readings_1m`` in large batches; an upsert never lowers ``count``, so a redelivered
older aggregate cannot overwrite a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import msgspec

from agents.changelog import Quarantine, TableRows
from agents.curated import (
    FIELD_NAMES,
    ITEMS_PER_TURN,
    TABLE_WRITE_ITEMS,
    Batch,
    Item,
    Turns,
    name_of,
    names_of,
    new_items,
)
from agents.deadletters import dead_letter
from agents.held_rows import SLOTS, slot_of
from agents.sink_group import SinkGroup, SinkMessage, start_sink
from connectors.kafka.producer import Record
from connectors.postgres.errors import is_retriable
from connectors.postgres.pool import create_pool
from connectors.postgres.rollups import RollupStore
from schemas.contract_wire import decode_rollup_record, encode_rollup
from schemas.envelopes import Position
from schemas.status import (
    ROLLUP_MAX_FIELDS,
    ROLLUP_MAX_WINDOWS,
    ROLLUP_SLACK_S,
    ROLLUP_WINDOW_S,
    Rollup,
    RollupState,
    encode,
)
from streams import tables
from streams.context import WorkerContext, stop_worker
from streams.metrics import timed
from streams.outputs import Outputs
from streams.retry import retry_until_done

log = logging.getLogger(__name__)


TABLE = tables.ROLLUPS
WINDOW_S = ROLLUP_WINDOW_S
DRAIN_CHECK_S = 0.1
"""While the worker stops or rebalances: how often pending rows are written (all of them)."""
PUBLISH_SLOTS = SLOTS
ROLLUP_BATCH_MAX = 20_000
"""Rollup records per upsert batch (they are small; Postgres keeps the newest per window)."""
_SLACK_S = ROLLUP_SLACK_S
"""Windows are dropped from the state a minute after they stop taking readings, so a reading
received slightly out of order (two API instances) still finds its window."""


Window = dict[str, list[Any]]
"""A window's aggregates: field → [count, min, max, sum]."""
Touched = dict[int, Window]
"""Window start (epoch seconds) → that window's aggregates, for the windows a run touched."""


@dataclass
class RollupTracker:
    """The windowing rules for one device at a time, without Faust."""

    grace_s: int
    max_fields: int = ROLLUP_MAX_FIELDS
    """Fields rolled up per window (``FLEET_STREAM__ROLLUP_MAX_FIELDS``)."""
    max_windows: int = ROLLUP_MAX_WINDOWS
    """Windows per row (``FLEET_STREAM__ROLLUP_MAX_WINDOWS``)."""

    def apply(
        self, state: RollupState | None, device_id: str, items: list[Item]
    ) -> tuple[RollupState, list[Rollup]]:
        """Add ``items`` to ``state`` (a new one when None); the touched windows' rollups."""
        state = state if state is not None else RollupState(device_id=device_id)
        return state, rollups_of(device_id, self.add(state, items))

    def add(self, state: RollupState, items: list[Item]) -> Touched:
        """Add ``items`` to their windows in ``state``; return the windows they touched.

        The returned windows are the state's own objects, so they stay current as later items
        are added, and keep their last aggregates when the state drops them as closed."""
        touched: Touched = {}
        windows = state.windows
        max_fields = self.max_fields
        for item in items:
            received = item.received_at.timestamp()
            start = math.floor(item.ts.timestamp() / WINDOW_S) * WINDOW_S
            if received > start + WINDOW_S + self.grace_s:
                state.late += 1
                continue
            if received > state.newest_received:
                state.newest_received = received
            stored: Any = windows.get(start)
            if stored is None:
                if len(windows) >= self.max_windows and not self._make_room(state, start):
                    state.dropped_fields += _numbers_in(item.sensors)
                    continue
                window = windows[start] = {}
            elif stored.__class__ is msgspec.Raw:  # as stored: decoded once it takes a reading
                window = windows[start] = _decode_window(stored)
            else:
                window = stored
            dropped = _add(window, item.sensors, max_fields)
            if dropped:
                state.dropped_fields += dropped
            touched[start] = window
        self._close(state)
        return touched

    def _close(self, state: RollupState) -> None:
        """Drop the windows that can take no more readings."""
        horizon = state.newest_received - WINDOW_S - self.grace_s - _SLACK_S
        windows = state.windows
        for start in [start for start in windows if start < horizon]:
            del windows[start]

    def _make_room(self, state: RollupState, start: int) -> bool:
        """Make room for a new window at ``start`` in a full row: closed windows go, then the
        oldest ones while they are older than ``start``. False when there is still no room (the
        new window would be the oldest)."""
        self._close(state)
        windows = state.windows
        while len(windows) >= self.max_windows:
            oldest = min(windows)
            if start < oldest:
                return False
            del windows[oldest]
        return True


class UndecodableWindow(ValueError):
    """A stored window of a device's row does not decode (its row is quarantined)."""


_window_decoder = msgspec.json.Decoder(dict[str, list[float]])


def _decode_window(raw: msgspec.Raw) -> Window:
    try:
        return cast(Window, _window_decoder.decode(raw))
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise UndecodableWindow(f"a stored window does not decode: {exc}") from exc


class StoredRow(msgspec.Struct, kw_only=True):
    """A rollup row as read from the table: :class:`~schemas.status.RollupState` with each
    window left encoded (``msgspec.Raw``). A tick writes the device's row again, but only the
    windows that took readings since are decoded and encoded again; the others (most of a
    row: the grace period keeps ~8 windows open) go back out as the bytes they came in as.
    Same fields as RollupState (a unit test holds them together)."""

    device_id: str
    windows: dict[int, msgspec.Raw] = {}
    newest_received: float = 0.0
    late: int = 0
    positions: dict[str, tuple[int, int]] = {}
    dropped_fields: int = 0


_stored_decoder = msgspec.json.Decoder(StoredRow)


def decode_stored(data: bytes) -> RollupState:
    """A stored row, its windows still encoded (they decode when they take a reading); the
    row encodes back with :func:`schemas.status.encode` as it was."""
    row = _stored_decoder.decode(data)
    return RollupState(
        device_id=row.device_id,
        windows=cast(Any, row.windows),
        newest_received=row.newest_received,
        late=row.late,
        positions=row.positions,
        dropped_fields=row.dropped_fields,
    )


def rollups_of(device_id: str, touched: Touched) -> list[Rollup]:
    """One rollup per field of each touched window, in window and field order."""
    return [
        _rollup(device_id, start, name, touched[start][name])
        for start in sorted(touched)
        for name in sorted(touched[start])
    ]


def _add(window: Window, sensors: dict[str, Any], max_fields: int) -> int:
    """Add a reading's numeric fields to a window's aggregates (count, min, max, sum), new fields
    only while the window has fewer than ``max_fields``; returns the values left out."""
    dropped = 0
    for sensor, values in sensors.items():
        if values.__class__ is not dict:
            continue
        names = FIELD_NAMES.get(sensor)
        if names is None:
            names = names_of(sensor)
        for field, value in values.items():
            kind = value.__class__
            if kind is not int and kind is not float:  # JSON numbers only: booleans are skipped
                continue
            name = names.get(field) or name_of(names, sensor, field)
            aggregate = window.get(name)
            if aggregate is None:
                if len(window) >= max_fields:
                    dropped += 1
                    continue
                window[name] = [1, value, value, value]
                continue
            aggregate[0] += 1
            if value < aggregate[1]:
                aggregate[1] = value
            elif value > aggregate[2]:  # never both: min <= max
                aggregate[2] = value
            total = aggregate[3] + value
            aggregate[3] = total if -_FLOAT_MAX <= total <= _FLOAT_MAX else _saturated(total)
    return dropped


def _numbers_in(sensors: dict[str, Any]) -> int:
    """The numeric field values of a reading (what :func:`_add` would roll up)."""
    return sum(
        1
        for values in sensors.values()
        if values.__class__ is dict
        for value in values.values()
        if value.__class__ is int or value.__class__ is float
    )


_FLOAT_MAX = sys.float_info.max
"""A window's sum saturates here: JSON has no infinity (msgspec writes ``null``), and a row
that does not decode would stop the device's rollups."""


def _saturated(total: float) -> float:
    """Finite inputs, infinite sum: the largest float of its sign, so the row stays JSON."""
    return math.copysign(_FLOAT_MAX, total)


def _rollup(device_id: str, start: int, name: str, aggregate: list[Any]) -> Rollup:
    count, low, high, total = aggregate
    bounds = _BOUNDS.get(start)
    if bounds is None:
        bounds = _bounds(start)
    return Rollup(
        device_id=device_id,
        field=name,
        window_start=bounds[0],
        window_end=bounds[1],
        count=int(count),
        min=low,
        max=high,
        sum=total,
        mean=total / count,
    )


_BOUNDS: dict[int, tuple[datetime, datetime]] = {}
"""A window's start and end as datetimes, by its start: the whole fleet shares the few
windows that are open, so they are made once, not twice per rollup record."""
_BOUNDS_KEPT = 1000
"""A bound, not an LRU (devices far ahead or behind make windows of their own)."""


def _bounds(start: int) -> tuple[datetime, datetime]:
    if len(_BOUNDS) >= _BOUNDS_KEPT:
        _BOUNDS.clear()
    bounds = _BOUNDS[start] = (
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(start + WINDOW_S, UTC),
    )
    return bounds


@dataclass(slots=True)
class _Device:
    """A device applied since it was last written: its state, and what to write it with."""

    event: Any
    """An event of the device's partition: its row goes to that partition of the changelog."""
    state: RollupState
    touched: Touched
    slot: int


@dataclass(frozen=True)
class Due:
    """What one tick publishes, writes and acks, in that order."""

    rollups: list[Rollup]
    rows: list[tuple[Any, RollupState]]
    """(event of the device's partition, new state) per device written."""
    acked: list[Any]
    """Events every device of which is written once this tick's rows are."""
    slot: int | None
    """The slot this tick writes (None: every slot), for the rows others hold (status)."""


class PendingRollups:
    """The rollups agent's bookkeeping, without Faust: applied readings wait in memory until
    their device's tick, and a batch is acked once every device in it was written.

    Ticks come ``slots`` times per publish interval; tick ``t`` writes the devices of slot
    ``t % slots``. A batch taken between ticks ``p`` and ``p + 1`` is acked at tick
    ``p + slots``: by then every slot, so every device of the batch, was written after it was
    applied."""

    def __init__(
        self,
        tracker: RollupTracker,
        slots: int,
        on_undecodable: Callable[[str, Exception], None] = lambda device_id, exc: None,
    ) -> None:
        self.tracker, self.slots = tracker, slots
        self.on_undecodable = on_undecodable
        """Told when a device's stored row holds a window that does not decode: the row is
        then reset, as one that does not decode at all (``agents.changelog.Quarantine``)."""
        self._devices: dict[str, _Device] = {}
        self._by_slot: list[dict[str, None]] = [{} for _ in range(slots)]
        """The pending devices of each slot, in the order they were applied: a tick looks
        at its own slot's devices only, not at every pending device."""
        self._batches: deque[tuple[int, list[Any]]] = deque()
        self._ticks = 0

    def apply(
        self,
        device_id: str,
        event: Any,
        items: Sequence[tuple[Item, Position | None]],
        load: Callable[[str], RollupState | None],
    ) -> int:
        """Add the device's new ``items`` (``load`` reads its written state the first time);
        return how many were new."""
        device = self._devices.get(device_id)
        if device is None:
            state = load(device_id) or RollupState(device_id=device_id)
            device = _Device(event, state, {}, slot_of(device_id, self.slots))
        fresh = new_items(items, device.state.positions)
        if not fresh:
            return 0
        try:
            device.touched.update(self.tracker.add(device.state, fresh))
        except UndecodableWindow as exc:
            self.on_undecodable(device_id, exc)
            device.state = RollupState(device_id=device_id, positions=device.state.positions)
            device.touched = self.tracker.add(device.state, fresh)
        if device_id not in self._devices:
            self._devices[device_id] = device
            self._by_slot[device.slot][device_id] = None
        return len(fresh)

    def took(self, events: list[Any]) -> None:
        """``events`` were applied: ack them once every device in them is written."""
        self._batches.append((self._ticks, events))

    def tick(self) -> Due:
        self._ticks += 1
        slot = self._ticks % self.slots
        due = list(self._by_slot[slot])
        acked: list[Any] = []
        while self._batches and self._batches[0][0] <= self._ticks - self.slots:
            acked += self._batches.popleft()[1]
        return self._write(due, acked, slot)

    def flush(self) -> Due:
        """Every device and every batch now: when the worker stops or its partitions are being
        reassigned, Faust waits for the batches it handed out to be acked."""
        acked = [event for _, events in self._batches for event in events]
        self._batches.clear()
        return self._write(list(self._devices), acked, None)

    def _write(self, device_ids: list[str], acked: list[Any], slot: int | None) -> Due:
        """The rollups and rows of ``device_ids``, which stop being pending."""
        rollups: list[Rollup] = []
        rows: list[tuple[Any, RollupState]] = []
        for device_id in device_ids:
            device = self._devices.pop(device_id)
            del self._by_slot[device.slot][device_id]
            rollups += rollups_of(device_id, device.touched)
            rows.append((device.event, device.state))
        return Due(rollups, rows, acked, slot)

    def __len__(self) -> int:
        """Devices applied and not written yet."""
        return len(self._devices)


WriteHeld = Callable[[int | None], Awaitable[None]]
"""Writes the rows another table holds for a slot (None: all): ``DeviceStatus.write_held``."""


async def _nothing_held(slot: int | None) -> None:
    return None


class Rollups:
    def __init__(self, ctx: WorkerContext, write_held: WriteHeld = _nothing_held) -> None:
        settings = ctx.settings
        self.write_held = write_held
        """Called by every tick before it acks: the status rows of the same devices."""
        self.ctx = ctx
        self.topic = settings.topics.readings_1m
        self.table = ctx.app.Table(
            TABLE,
            key_type=bytes,  # raw bytes both ways: Faust derives the serializer from the type
            value_type=bytes,
            partitions=settings.kafka.partitions,
            store="rocksdb://" if settings.stream.table_store == "rocksdb" else "memory://",
            help="open 1-minute windows per device",
        )
        slots = PUBLISH_SLOTS
        self.tick_s = settings.stream.rollup_publish_interval_s / slots
        stream = settings.stream
        tracker = RollupTracker(
            stream.rollup_grace_s,
            max_fields=stream.rollup_max_fields,
            max_windows=stream.rollup_max_windows,
        )
        self.quarantine = Quarantine(self.table, ctx.clock)
        self.pending = PendingRollups(tracker, slots, self._undecodable)
        self.deadletter_topic = settings.topics.deadletter
        self._stream: Any = None
        self._lock = asyncio.Lock()
        """Applying a batch and a tick never interleave (both await in the middle)."""

    async def apply(
        self, stream: Any, events: list[Any], batch: Batch, turn: Turns, *, take: bool = True
    ) -> None:
        """Apply the batch's new readings (``agents.device_state`` read it); the batch waits
        for the ticks and is acked by the tick that writes the last of its devices. With
        ``take`` False the caller hands the events over itself (:meth:`took`), once: a batch
        applied device by device."""
        async with self._lock:
            self._stream = stream
            for device_id, entry in batch.devices.items():
                event = events[entry.message_index]
                await turn.took(self.pending.apply(device_id, event, entry.items, self._load))
            if take:
                self.pending.took(events)

    def took(self, events: list[Any]) -> None:
        """``events`` were applied (device by device): ack them with the ticks."""
        self.pending.took(events)

    def _load(self, device_id: str) -> RollupState | None:
        """The device's row as last written."""
        key = device_id.encode()
        return self.quarantine.decode(key, self.table.get(key), decode_stored)

    def _undecodable(self, device_id: str, exc: Exception) -> None:
        """A stored window of the device's row did not decode: the row as stored is
        dead-lettered (and the device starts afresh, ``PendingRollups.apply``)."""
        key = device_id.encode()
        self.quarantine.quarantine(key, self.table.get(key) or b"", exc)

    async def tick(self, *, everything: bool = False) -> None:
        """Publish and write one slot's devices (or all), then ack the batches that are
        complete."""
        async with self._lock:
            due = self.pending.flush() if everything else self.pending.tick()
            letters = self.quarantine.take()
            if due.rollups or due.rows or letters:
                await self._publish_and_write(due, letters)
            await self.write_held(due.slot)
            for event in due.acked:
                await self._stream.ack(event)

    async def _publish_and_write(self, due: Due, letters: list[Record]) -> None:
        """The tick's rollup records, then its rows (``agents.changelog``)."""
        turn = Turns(ITEMS_PER_TURN)
        outputs = Outputs()
        outputs.extend(self.deadletter_topic, letters)
        records = [Record(r.device_id.encode(), encode_rollup(r)) for r in due.rollups]
        outputs.extend(self.topic, records)
        await turn.took(len(due.rollups))
        await self.ctx.publish(outputs)
        rows = TableRows(self.table)  # after the rollup records: see agents.changelog
        for event, state in due.rows:
            rows.add(event, state.device_id.encode(), encode(state))
            await turn.took(TABLE_WRITE_ITEMS)
        await rows.write(self.ctx.publish)


async def _open_store(ctx: WorkerContext) -> RollupStore:
    pg = ctx.settings.postgres
    pool = await retry_until_done(
        lambda: create_pool(pg, min_size=pg.pool_min_size, max_size=pg.pool_max_size),
        what="connecting to Postgres",
        is_retriable=is_retriable,
        backoff_max_s=ctx.settings.worker.retry_backoff_max_s,
    )
    return RollupStore(pool)


def register_tasks(ctx: WorkerContext, rollups: Rollups) -> None:
    """The ticks that publish and write ``rollups`` (its agent: ``agents.device_state``), and
    the sink that upserts the published rollups into ``readings_1m``."""
    settings = ctx.settings

    async def publish_rollups() -> None:
        """The ticks, as a task of the app rather than a Faust timer: Faust's timers end as soon
        as the app is stopping, but the app then waits for every batch it handed out to be
        acked (``stream_wait_empty``), so this loop writes everything pending once the app
        stops or rebalances, and goes on until the task is cancelled after that wait."""
        app = ctx.app
        try:
            while True:
                draining = app.should_stop or app.rebalancing
                await asyncio.sleep(DRAIN_CHECK_S if draining else rollups.tick_s)  # a schedule
                await rollups.tick(everything=app.should_stop or app.rebalancing)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - like an agent: stop, do not go on half-done
            stop_worker("rollups timer", exc)

    ctx.app.task(publish_rollups)

    # One Kafka record per (device, field, window) update: through Faust's per-message machinery
    # that cost more than the readings themselves, so the upserts read the topic in a consumer
    # group of their own, in large batches (agents.sink_group).
    stores: list[RollupStore] = []

    async def sink_rollups(messages: list[SinkMessage]) -> None:
        if not stores:
            stores.append(timed(await _open_store(ctx), "rollups", "upsert"))
        await _upsert(ctx, stores[0], messages)

    group = SinkGroup(settings, "sink-rollups", [settings.topics.readings_1m], ROLLUP_BATCH_MAX)
    start_sink(ctx, group, sink_rollups)


async def _upsert(ctx: WorkerContext, store: RollupStore, messages: list[SinkMessage]) -> None:
    now = datetime.now(UTC)
    rollups: list[Rollup] = []
    letters = Outputs()
    for message in messages:
        try:
            rollups.append(decode_rollup_record(message.value or b""))
        except ValueError as exc:  # msgspec's errors are ValueErrors
            letter = dead_letter("sink.rollups", message, exc, now)
            letters.add(ctx.settings.topics.deadletter, letter)
    await retry_until_done(
        lambda: store.upsert(rollups),
        what=f"upserting {len(rollups)} rollups",
        is_retriable=is_retriable,
        backoff_max_s=ctx.settings.worker.retry_backoff_max_s,
    )
    await ctx.publish(letters)

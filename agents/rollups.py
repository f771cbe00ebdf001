"""Rollups: 1-minute tumbling windows per device and sensor field (count, min, max, mean).

The ``rollups`` agent takes batches of ``fleet.curated.v1``, adds each new reading (repeats are
dropped by position, ``agents.curated``) to the window of its timestamp in a Faust Table row per
device (one write per device per batch), and publishes the touched windows' whole aggregates to
``fleet.readings-1m.v1`` before it writes the table and acks. Its batches wait up to
``FLEET_STREAM__ROLLUP_BATCH_WITHIN_S`` (5 s): a batch publishes one record per device, field
and touched window, so with short batches a fleet of slow senders made several rollup records
per reading; with longer batches the records per second follow the fleet, not the reading rate.
``FLEET_STREAM__ROLLUP_BATCH_MAX`` is high (4,096 envelopes) so that the time sets the batch
even for small envelopes: 128 of them once made 0.8 s batches and 2.5 rollup records per
reading at 5,000 readings/s in requests of 50.
Longer still would cost less, but a worker stops (and hands over its partitions) only after its
current batch: 10 s made every shutdown 10 s longer (decision 25).

A reading is *late* when the edge received it more than ``FLEET_STREAM__ROLLUP_GRACE_S`` after
its window ended: it stays in ``readings`` but is in no rollup. Deciding on ``received_at``
(fixed at the edge) instead of the worker's clock makes the decision the same on every replay.

The ``sink-rollups`` sink (its own consumer group, ``agents.sink_group``) upserts those records
into Postgres ``readings_1m`` in large batches; an upsert never lowers ``count``, so a redelivered
older aggregate cannot overwrite a newer one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.changelog import TableRows
from agents.context import WorkerContext, guarded
from agents.curated import (
    ITEMS_PER_TURN,
    TABLE_WRITE_ITEMS,
    Item,
    Turns,
    new_items,
    read_batch_yielding,
)
from agents.deadletters import dead_letter
from agents.metrics import timed
from agents.outputs import Outputs
from agents.retry import retry_until_done
from agents.sink_group import SinkGroup, SinkMessage, start_sink
from connectors.kafka.producer import Record
from connectors.postgres.errors import is_retriable
from connectors.postgres.pool import create_pool
from connectors.postgres.rollups import RollupStore
from schemas.status import Rollup, RollupState, decode_rollup, decode_rollup_state, encode

log = logging.getLogger(__name__)


STAGE = "rollups"
TABLE = "rollups"
WINDOW_S = 60
ROLLUP_BATCH_MAX = 20_000
"""Rollup records per upsert batch (they are small; Postgres keeps the newest per window)."""
_SLACK_S = 60
"""Windows are dropped from the state a minute after they stop taking readings, so a reading
received slightly out of order (two API instances) still finds its window."""


@dataclass
class RollupTracker:
    """The windowing rules for one device at a time, without Faust."""

    grace_s: int

    def apply(
        self, state: RollupState | None, device_id: str, items: list[Item]
    ) -> tuple[RollupState, list[Rollup]]:
        state = state if state is not None else RollupState(device_id=device_id)
        touched: set[int] = set()
        for item in items:
            received = item.received_at.timestamp()
            start = math.floor(item.ts.timestamp() / WINDOW_S) * WINDOW_S
            if received > start + WINDOW_S + self.grace_s:
                state.late += 1
                continue
            if received > state.newest_received:
                state.newest_received = received
            _add(state.windows.setdefault(start, {}), item.sensors)
            touched.add(start)
        rollups = [
            _rollup(device_id, start, name, state)
            for start in sorted(touched)
            for name in sorted(state.windows[start])
        ]
        horizon = state.newest_received - WINDOW_S - self.grace_s - _SLACK_S
        for start in [start for start in state.windows if start < horizon]:
            del state.windows[start]
        return state, rollups


def _add(window: dict[str, list[Any]], sensors: dict[str, Any]) -> None:
    """Add a reading's numeric fields to a window's aggregates (count, min, max, sum)."""
    for sensor, values in sensors.items():
        if not isinstance(values, dict):
            continue
        for field, value in values.items():
            if value.__class__ is bool or not isinstance(value, int | float):
                continue
            name = f"{sensor}.{field}"
            aggregate = window.get(name)
            if aggregate is None:
                window[name] = [1, value, value, value]
                continue
            aggregate[0] += 1
            if value < aggregate[1]:
                aggregate[1] = value
            if value > aggregate[2]:
                aggregate[2] = value
            aggregate[3] += value


def _rollup(device_id: str, start: int, name: str, state: RollupState) -> Rollup:
    count, low, high, total = state.windows[start][name]
    return Rollup(
        device_id=device_id,
        field=name,
        window_start=datetime.fromtimestamp(start, UTC),
        window_end=datetime.fromtimestamp(start + WINDOW_S, UTC),
        count=int(count),
        min=low,
        max=high,
        sum=total,
        mean=total / count,
    )


class Rollups:
    def __init__(self, ctx: WorkerContext) -> None:
        settings = ctx.settings
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
        self.tracker = RollupTracker(settings.stream.rollup_grace_s)

    async def on_batch(self, stream: Any, events: list[Any]) -> None:
        now = datetime.now(UTC)
        turn = Turns(ITEMS_PER_TURN)
        messages = [event.message for event in events]
        batch = await read_batch_yielding(messages, stage=STAGE, now=now, turn=turn)
        outputs = Outputs()
        outputs.extend(self.ctx.settings.topics.deadletter, batch.letters)
        writes: list[tuple[Any, RollupState]] = []
        for device_id, entry in batch.devices.items():
            value = self.table.get(device_id.encode())
            state = None if value is None else decode_rollup_state(value)
            applied = dict(state.positions) if state is not None else {}
            items = new_items(entry.items, applied)
            if not items:
                continue
            state, rollups = self.tracker.apply(state, device_id, items)
            state.positions = applied
            writes.append((events[entry.message_index], state))
            key = device_id.encode()
            outputs.extend(self.topic, [Record(key, encode(rollup)) for rollup in rollups])
            await turn.took(len(items) + len(rollups))
        await self.ctx.publish(outputs)
        rows = TableRows(self.table)  # after the rollup records: see agents.changelog
        for event, state in writes:
            rows.add(event, state.device_id.encode(), encode(state))
            await turn.took(TABLE_WRITE_ITEMS)
        await rows.write(self.ctx.publish)
        for event in events:
            await stream.ack(event)


async def _open_store(ctx: WorkerContext) -> RollupStore:
    pg = ctx.settings.postgres
    pool = await retry_until_done(
        lambda: create_pool(pg.dsn(), min_size=pg.pool_min_size, max_size=pg.pool_max_size),
        what="connecting to Postgres",
        is_retriable=is_retriable,
        backoff_max_s=ctx.settings.worker.retry_backoff_max_s,
    )
    return RollupStore(pool)


def register(ctx: WorkerContext) -> None:
    settings = ctx.settings
    rollups = Rollups(ctx)
    within = settings.stream.rollup_batch_within_s

    async def rollup_windows(stream: Any) -> None:
        async for events in stream.noack_take(settings.stream.rollup_batch_max, within):
            await rollups.on_batch(stream, list(events))

    ctx.app.agent(ctx.topics.curated, name="rollups")(guarded("rollups", rollup_windows))
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
            rollups.append(decode_rollup(message.value or b""))
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

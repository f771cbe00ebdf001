"""Status rows held until their device's tick: fewer writes, the same acks (decision 40)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from agents.curated import Batch, Item, Turns, read_batch_yielding
from agents.held_rows import HeldRows, slot_of
from agents.rollups import Rollups
from agents.sink_group import SinkMessage
from agents.status import DeviceStatus, StatusTracker
from schemas.envelopes import curated_envelope
from schemas.events import encode_curated
from schemas.settings import Settings
from schemas.status import decode_device_state
from streams.outputs import Outputs
from tests.clock import now
from tests.factories import raw_event, reading
from tests.pipeline_helpers import validate_event

NOW = now()
DEVICE = "esp32-held"


def test_held_rows_are_taken_by_slot_once_and_the_newest_event_wins() -> None:
    held: HeldRows[str] = HeldRows(slots=3)
    devices = [f"dev-{n}" for n in range(12)]
    for device in devices:
        held.hold(device, "old", f"{device}@1")
    held.hold(devices[0], "new", f"{devices[0]}@2")
    held.release(devices[1])
    slot = slot_of(devices[0], 3)
    taken = held.take(slot)
    assert ("new", f"{devices[0]}@2") in taken
    assert {state.split("@")[0] for _, state in taken} == {
        d for d in devices[2:] + devices[:1] if slot_of(d, 3) == slot
    }
    assert held.take(slot) == []
    rest = held.take(None)
    assert len(taken) + len(rest) == len(devices) - 1
    assert len(held) == 0 and held.get(devices[2]) is None


class _Table:
    def __init__(self, name: str, **_: Any) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = _Topic(f"{name}-changelog")

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.data.items())


@dataclass
class _Topic:
    name: str

    def get_topic_name(self) -> str:
        return self.name


class _App:
    rebalancing = False

    def Table(self, name: str, **options: Any) -> _Table:
        return _Table(name, **options)


@dataclass
class _Context:
    settings: Settings = field(default_factory=Settings)
    app: _App = field(default_factory=_App)
    published: list[Outputs] = field(default_factory=list)
    now: datetime = NOW

    def clock(self) -> datetime:
        return self.now

    def device_cache(self) -> Any:
        return {}

    async def publish(self, outputs: Outputs) -> None:
        self.published.append(outputs)

    def records(self, suffix: str) -> list[bytes | None]:
        return [
            record.value
            for outputs in self.published
            for topic, batch in outputs.by_topic.items()
            if topic.endswith(suffix)
            for record in batch
        ]


@dataclass
class _Event:
    message: SinkMessage


async def _batch(offset: int, ctx: _Context) -> tuple[list[Any], Batch]:
    item = encode_curated(validate_event(raw_event(reading(DEVICE, offset)), now=ctx.now))
    value = curated_envelope([item], [(0, offset, 0)])
    message = SinkMessage("curated", 0, offset, None, value, 0.0, None)
    batch = await read_batch_yielding([message], stage="test", now=ctx.now, turn=Turns(10**9))
    return [_Event(message)], batch


def _holding() -> Settings:
    base = Settings()
    return base.model_copy(
        update={"stream": base.stream.model_copy(update={"hold_status_rows": True})}
    )


async def test_by_default_every_state_is_written_with_its_batch() -> None:
    ctx = _Context()
    status = DeviceStatus(cast(Any, ctx))
    for offset in (1, 2):
        ctx.now += timedelta(seconds=1)
        events, batch = await _batch(offset, ctx)
        await status.apply(events, batch, ctx.now, Turns(10**9))
    assert len(ctx.records("device-status-changelog")) == 2
    assert len(status.held) == 0


async def test_a_state_without_transition_is_held_until_its_slot_is_written() -> None:
    ctx = _Context(settings=_holding())
    status = DeviceStatus(cast(Any, ctx))
    events, batch = await _batch(1, ctx)
    await status.apply(events, batch, ctx.now, Turns(10**9))
    assert len(ctx.records("device-status-changelog")) == 1, "coming online is written at once"

    ctx.now += timedelta(seconds=1)
    events, batch = await _batch(2, ctx)
    await status.apply(events, batch, ctx.now, Turns(10**9))
    assert len(ctx.records("device-status-changelog")) == 1, "no row per batch any more"
    held = status.state(DEVICE)
    assert held is not None and held.count == 2, "reads see the held state"
    stored = decode_device_state(status.table.data[DEVICE.encode()])
    assert stored.count == 1

    await status.write_held((slot_of(DEVICE, 5) + 1) % 5)
    assert len(ctx.records("device-status-changelog")) == 1, "another slot's tick"
    await status.write_held(slot_of(DEVICE, 5))
    [_, row] = ctx.records("device-status-changelog")
    assert row is not None and decode_device_state(row).count == 2
    assert decode_device_state(status.table.data[DEVICE.encode()]).count == 2
    assert len(status.held) == 0


async def test_a_tick_writes_the_held_rows_of_its_slot_before_it_acks() -> None:
    ctx = _Context()
    order: list[str] = []

    async def write_held(slot: int | None) -> None:
        order.append(f"held {slot}")

    class Stream:
        async def ack(self, event: Any) -> None:
            order.append("ack")

    rollups = Rollups(cast(Any, ctx), write_held)
    events, batch = await _batch(1, ctx)
    await rollups.apply(Stream(), events, batch, Turns(10**9))
    for _ in range(5):
        await rollups.tick()
    assert order[-2:] == ["held 0", "ack"], "the batch is acked by the tick after every slot"
    assert order[:-1] == [f"held {t % 5}" for t in range(1, 6)]
    await rollups.tick(everything=True)
    assert order[-1] == "held None"


def test_transitions_are_stamped_from_the_readings_so_a_redo_publishes_the_same_records() -> None:
    """A crash before the row is written makes a later run decide the same transition again,
    with another clock: its record must not differ (consumers dedupe on (device_id, seq))."""

    def item(received_s: int) -> Item:
        at = NOW + timedelta(seconds=received_s)
        return Item(f"e{received_s}", DEVICE, at, at, {})

    tracker = StatusTracker(default_timeout_s=60)
    records = []
    for clock_s in (10, 40):  # the first run, and the redo 30 s later
        _, online = tracker.apply(
            None, DEVICE, [item(1), item(5)], NOW + timedelta(seconds=clock_s)
        )
        assert online is not None
        state, _ = tracker.apply(None, DEVICE, [item(1), item(5)], NOW)
        offline = tracker.expire(state, NOW + timedelta(seconds=clock_s + 100))
        records.append((online, offline))
    assert records[0] == records[1]
    online, offline = records[0]
    assert online.changed_at == online.last_seen == NOW + timedelta(seconds=1)
    assert offline is not None and offline.changed_at == NOW + timedelta(seconds=65)

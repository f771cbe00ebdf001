"""The device-state step: one read of a batch feeds the status table, then the rollups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pytest

from agents.curated import Batch, Turns
from agents.device_state import STAGE, DeviceState
from agents.rollups import Rollups
from agents.sink_group import SinkMessage
from agents.status import DeviceStatus
from schemas.envelopes import curated_envelope
from schemas.events import decode_dead_letter, encode_curated
from schemas.settings import Settings
from streams.crashes import CRASH_LIMIT, Crash, CrashLedger, ledger_key
from streams.outputs import Outputs
from tests.clock import now
from tests.factories import raw_event, reading
from tests.pipeline_helpers import validate_event

NOW = now()


@dataclass
class Context:
    settings: Settings = field(default_factory=Settings)
    published: list[Outputs] = field(default_factory=list)
    clock: Callable[[], datetime] = now
    crashes: CrashLedger | None = None

    async def publish(self, outputs: Outputs) -> None:
        self.published.append(outputs)


@dataclass
class Step:
    name: str
    seen: list[tuple[str, Batch]]

    async def apply(self, *args: Any) -> None:
        batch = next(arg for arg in args if isinstance(arg, Batch))
        assert isinstance(args[-1], Turns)
        self.seen.append((self.name, batch))


@dataclass
class Event:
    message: SinkMessage


async def test_one_read_feeds_the_status_table_then_the_rollups_and_dead_letters_once() -> None:
    items = [
        encode_curated(validate_event(raw_event(reading(device, n)), now=NOW))
        for n, device in enumerate(["esp32-a", "esp32-b", "esp32-a"])
    ]
    value = curated_envelope(
        [items[0], b'{"event_id": 1}', *items[1:]], [(0, 5, n) for n in range(4)]
    )
    events = [Event(SinkMessage("curated", 0, 9, None, value, 0.0, None))]
    ctx, seen = Context(), list[tuple[str, Batch]]()
    step = DeviceState(
        cast(Any, ctx),
        cast(DeviceStatus, Step("status", seen)),
        cast(Rollups, Step("rollups", seen)),
    )
    await step.on_batch(object(), cast(list[Any], events))

    assert [name for name, _ in seen] == ["status", "rollups"]
    assert seen[0][1] is seen[1][1]  # the same read, not one per consumer
    assert sorted(seen[0][1].devices) == ["esp32-a", "esp32-b"]
    letters = [
        r for outputs in ctx.published for r in outputs.records(ctx.settings.topics.deadletter)
    ]
    [letter] = [decode_dead_letter(record.value or b"") for record in letters]
    assert (letter.stage, letter.item) == ("device-state", 1)


@dataclass
class Failing:
    """A step that raises for one device (a bug no record check foresaw)."""

    bad_device: str
    applied: list[str] = field(default_factory=list)
    handed: list[list[Any]] = field(default_factory=list)

    async def apply(self, *args: Any, take: bool = True) -> None:
        batch = next(arg for arg in args if isinstance(arg, Batch))
        if self.bad_device in batch.devices:
            raise ZeroDivisionError("a value no code path foresaw")
        self.applied += list(batch.devices)

    def took(self, events: list[Any]) -> None:
        self.handed.append(events)


def poison_ledger(message: SinkMessage, count: int) -> CrashLedger:
    ledger = CrashLedger("unused:9092", "crashes")
    key = ledger_key(STAGE, message)
    ledger.crashes[key] = Crash(STAGE, message.topic, message.partition, message.offset, count, "")
    return ledger


@pytest.mark.parametrize(("crashes", "isolated"), [(CRASH_LIMIT - 1, False), (CRASH_LIMIT, True)])
async def test_a_record_that_crashed_workers_again_and_again_is_applied_device_by_device(
    crashes: int, isolated: bool
) -> None:
    items = [
        encode_curated(validate_event(raw_event(reading(device, n)), now=NOW))
        for n, device in enumerate(["esp32-a", "esp32-bad", "esp32-c"])
    ]
    message = SinkMessage("curated", 0, 9, None, curated_envelope(items), 0.0, None)
    ctx = Context(crashes=poison_ledger(message, crashes))
    status, rollups = Failing("esp32-bad"), Failing("esp32-bad")
    step = DeviceState(cast(Any, ctx), cast(DeviceStatus, status), cast(Rollups, rollups))
    events = [Event(message)]
    if not isolated:  # below the limit the batch goes as one, and the bug stops the worker
        with pytest.raises(ZeroDivisionError):
            await step.on_batch(object(), cast(list[Any], events))
        return
    await step.on_batch(object(), cast(list[Any], events))
    assert sorted(status.applied) == sorted(rollups.applied) == ["esp32-a", "esp32-c"]
    assert rollups.handed == [events]  # acked once, with the ticks
    [letter] = [
        decode_dead_letter(r.value or b"")
        for outputs in ctx.published
        for r in outputs.records(ctx.settings.topics.deadletter)
    ]
    assert (letter.stage, letter.key) == (STAGE, "esp32-bad")
    assert "ZeroDivisionError" in letter.reason

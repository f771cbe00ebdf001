"""The ``device-state`` agent: one read of each curated envelope for the status table and the
rollups.

Both keep one table row per device, co-partitioned with ``fleet.curated.v1``, and both read
every curated reading. Reading and grouping a batch is a tenth of the worker's time at full
load, so one agent reads each batch once (``agents.curated.read_batch_yielding``) and hands it
to :meth:`DeviceStatus.apply <agents.status.DeviceStatus.apply>` and then to
:meth:`Rollups.apply <agents.rollups.Rollups.apply>` (decision 33).

Delivery: a batch is acked by the rollups' tick that writes the last of its devices, after
the status rows were written (they are written before the rollups take the batch). A record
that cannot be read is one dead letter (stage ``device-state``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from agents import rollups as rollups_module
from agents import status as status_module
from agents.curated import ITEMS_PER_TURN, Batch, DeviceItems, Turns, read_batch_yielding
from agents.deadletters import dead_letter
from agents.rollups import Rollups
from agents.status import DeviceStatus
from connectors.kafka.producer import Record
from streams.context import WorkerContext, guarded
from streams.crashes import short_traceback
from streams.outputs import Outputs

STAGE = "device-state"


class DeviceState:
    """The agent's batch step, around the status table and the rollups."""

    def __init__(self, ctx: WorkerContext, status: DeviceStatus, rollups: Rollups) -> None:
        self.ctx, self.status, self.rollups = ctx, status, rollups

    async def on_batch(self, stream: Any, events: list[Any]) -> None:
        now = self.ctx.clock()
        turn = Turns(ITEMS_PER_TURN)
        messages = [event.message for event in events]
        batch = await read_batch_yielding(messages, stage=STAGE, now=now, turn=turn)
        if batch.letters:
            await self._dead_letters(batch.letters)
        if self._holds_poison(messages):
            await self._device_by_device(stream, events, batch, now, turn)
            return
        await self.status.apply(events, batch, now, turn)
        await self.rollups.apply(stream, events, batch, turn)

    def _holds_poison(self, messages: list[Any]) -> bool:
        crashes = self.ctx.crashes
        return crashes is not None and any(crashes.is_poison(STAGE, m) for m in messages)

    async def _device_by_device(
        self, stream: Any, events: list[Any], batch: Batch, now: datetime, turn: Turns
    ) -> None:
        """A batch holding a record that crashed workers again and again: each device on its
        own, so the device whose readings make the step fail is dead-lettered alone (its
        readings are stored by the sinks all the same; only its status and rollups miss
        them)."""
        letters: list[Record] = []
        for device_id, entry in batch.devices.items():
            alone = Batch({device_id: entry}, [])
            try:
                await self.status.apply(events, alone, now, turn)
                await self.rollups.apply(stream, events, alone, turn, take=False)
            except Exception as exc:  # noqa: BLE001 - isolating is the point
                letters.append(self._letter(events[entry.message_index].message, entry, exc, now))
        self.rollups.took(events)
        await self._dead_letters(letters)

    def _letter(self, message: Any, entry: DeviceItems, exc: Exception, now: datetime) -> Record:
        items = [item for item, _ in entry.items]
        reason = RuntimeError(f"crashed the worker, isolated: {short_traceback(exc)}")
        original = msgspec.json.encode(items)
        key = items[0].device_id if items else None
        return dead_letter(STAGE, message, reason, now, original=original, key=key)

    async def _dead_letters(self, letters: list[Record]) -> None:
        if letters:
            outputs = Outputs()
            outputs.extend(self.ctx.settings.topics.deadletter, letters)
            await self.ctx.publish(outputs)


def register(ctx: WorkerContext) -> None:
    status = DeviceStatus(ctx)
    rollups = Rollups(ctx, status.write_held)
    step = DeviceState(ctx, status, rollups)
    settings = ctx.settings.stream

    async def device_state(stream: Any) -> None:
        batches = stream.noack_take(settings.state_batch_max, settings.state_batch_within_s)
        async for events in batches:
            await step.on_batch(stream, list(events))

    ctx.app.agent(ctx.topics.curated, name=STAGE)(guarded(STAGE, device_state, ctx.crashes))
    status_module.register_timer(ctx, status)
    rollups_module.register_tasks(ctx, rollups)

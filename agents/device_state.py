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

from datetime import UTC, datetime
from typing import Any

from agents import rollups as rollups_module
from agents import status as status_module
from agents.curated import ITEMS_PER_TURN, Turns, read_batch_yielding
from agents.rollups import Rollups
from agents.status import DeviceStatus
from streams.context import WorkerContext, guarded
from streams.outputs import Outputs

STAGE = "device-state"


class DeviceState:
    """The agent's batch step, around the status table and the rollups."""

    def __init__(self, ctx: WorkerContext, status: DeviceStatus, rollups: Rollups) -> None:
        self.ctx, self.status, self.rollups = ctx, status, rollups

    async def on_batch(self, stream: Any, events: list[Any]) -> None:
        now = datetime.now(UTC)
        turn = Turns(ITEMS_PER_TURN)
        messages = [event.message for event in events]
        batch = await read_batch_yielding(messages, stage=STAGE, now=now, turn=turn)
        if batch.letters:
            letters = Outputs()
            letters.extend(self.ctx.settings.topics.deadletter, batch.letters)
            await self.ctx.publish(letters)
        await self.status.apply(events, batch, now, turn)
        await self.rollups.apply(stream, events, batch, turn)


def register(ctx: WorkerContext) -> None:
    status = DeviceStatus(ctx)
    rollups = Rollups(ctx)
    step = DeviceState(ctx, status, rollups)
    settings = ctx.settings.stream

    async def device_state(stream: Any) -> None:
        batches = stream.noack_take(settings.state_batch_max, settings.state_batch_within_s)
        async for events in batches:
            await step.on_batch(stream, list(events))

    ctx.app.agent(ctx.topics.curated, name=STAGE)(guarded(STAGE, device_state))
    status_module.register_timer(ctx, status)
    rollups_module.register_tasks(ctx, rollups)

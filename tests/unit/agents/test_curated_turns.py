"""Long batch steps give the event loop turns, and read the same as in one go."""

from __future__ import annotations

import asyncio

from agents.curated import Turns, read_batch_yielding
from agents.sink_group import SinkMessage
from schemas.envelopes import curated_envelope
from schemas.events import encode_curated
from tests.clock import now
from tests.factories import raw_event, reading
from tests.pipeline_helpers import read_batch, validate_event

NOW = now()


def _messages(envelopes: int, per_envelope: int) -> list[SinkMessage]:
    messages = []
    for m in range(envelopes):
        events = [raw_event(reading(f"esp32-{n % 3}", n)) for n in range(per_envelope)]
        items = [encode_curated(validate_event(e, now=NOW)) for e in events]
        value = curated_envelope(items, [(0, m, n) for n in range(per_envelope)])
        messages.append(SinkMessage("c", 0, m, None, value, 0.0, None))
    messages.append(SinkMessage("c", 0, envelopes, None, b"not an envelope", 0.0, None))
    return messages


async def test_reading_with_turns_gives_the_same_batch() -> None:
    messages = _messages(4, 5)
    at_once = read_batch(messages, stage="status", now=NOW)
    in_turns = await read_batch_yielding(messages, stage="status", now=NOW, turn=Turns(3))
    assert at_once.devices == in_turns.devices
    assert len(at_once.letters) == len(in_turns.letters) == 1


async def test_other_tasks_run_while_a_long_batch_is_read() -> None:
    ran_at: list[int] = []
    reader_progress: list[str] = []

    async def other_agent() -> None:
        ran_at.append(len(reader_progress))

    turn = Turns(10)
    messages = _messages(6, 10)
    waiting = asyncio.create_task(other_agent())  # ready before the read starts
    batch = await read_batch_yielding(messages, stage="rollups", now=NOW, turn=turn)
    reader_progress.extend(batch.devices)
    await waiting
    assert ran_at == [0]  # it ran during the read, not after it


async def test_a_turn_is_given_only_after_every_units_of_work() -> None:
    turn = Turns(5)
    switches = 0

    async def count_switches() -> None:
        nonlocal switches
        while True:
            switches += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_switches())
    await asyncio.sleep(0)
    before = switches
    for _ in range(4):
        await turn.took(1)
    assert switches == before  # 4 units: no turn yet
    await turn.took(1)
    assert switches == before + 1
    counter.cancel()

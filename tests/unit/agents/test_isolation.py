"""A record that crashed workers again and again is taken apart: the failing part alone is a
dead letter, the rest goes on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from agents.isolation import bisect, split_curated
from agents.sink_group import SinkMessage, isolating
from schemas.envelopes import curated_envelope, decode_curated_envelope
from schemas.events import decode_dead_letter
from schemas.settings import Settings
from streams.crashes import CRASH_LIMIT, Crash, CrashLedger, ledger_key
from streams.outputs import Outputs
from tests import clock


async def test_bisect_finds_each_part_that_fails_alone_and_runs_the_rest() -> None:
    ran: list[list[int]] = []

    async def run(parts: list[int]) -> None:
        if 13 in parts or 40 in parts:
            raise ValueError("bad part")
        ran.append(parts)

    failed = await bisect(run, list(range(64)))
    assert [part for part, _ in failed] == [13, 40]
    assert sorted(n for parts in ran for n in parts) == [n for n in range(64) if n not in (13, 40)]
    assert len(ran) <= 2 * 6 + 2  # halves along two paths of a 64-part tree, not 62 singles


def test_a_curated_envelope_splits_into_one_message_per_reading_with_its_position() -> None:
    message = SinkMessage(
        "c", 1, 7, None, curated_envelope([b"{}", b"[]"], [(0, 5, 0), (0, 5, 1)]), 0.0, None
    )
    parts = split_curated(message)
    assert [decode_curated_envelope(p.value).positions for p in parts] == [[(0, 5, 0)], [(0, 5, 1)]]
    assert {(p.topic, p.partition, p.offset) for p in parts} == {("c", 1, 7)}
    other = SinkMessage("status", 0, 1, b"k", b"not an envelope", 0.0, None)
    assert split_curated(other) == [other]


@dataclass
class Context:
    crashes: CrashLedger
    settings: Settings = field(default_factory=Settings)
    published: list[Outputs] = field(default_factory=list)

    def clock(self) -> Any:
        return clock.now()

    async def publish(self, outputs: Outputs) -> None:
        self.published.append(outputs)


async def test_a_sink_handles_its_poison_record_reading_by_reading_and_the_rest_as_usual() -> None:
    good = SinkMessage("c", 0, 1, None, curated_envelope([b'{"n": 1}']), 0.0, None)
    poison = SinkMessage("c", 0, 2, None, curated_envelope([b'{"n": 2}', b'{"n": 3}']), 0.0, None)
    ledger = CrashLedger("unused:9092", "crashes")
    ledger.crashes[ledger_key("sink-x", poison)] = Crash("sink-x", "c", 0, 2, CRASH_LIMIT, "boom")
    handled: list[bytes] = []

    async def handle(messages: list[SinkMessage]) -> None:
        values = [m.value or b"" for m in messages]
        if any(b'"n": 3' in v for v in values):
            raise KeyError("n")
        handled.extend(values)

    ctx = Context(ledger)
    await isolating(cast(Any, ctx), "sink-x", handle)([good, poison])
    assert handled == [good.value, curated_envelope([b'{"n": 2}'])]
    [letter] = [
        decode_dead_letter(r.value or b"")
        for outputs in ctx.published
        for r in outputs.records(ctx.settings.topics.deadletter)
    ]
    assert letter.stage == "sink-x" and "KeyError" in letter.reason and "boom" in letter.reason
    assert letter.original == curated_envelope([b'{"n": 3}'])

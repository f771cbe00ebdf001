"""The crash ledger is seen by every worker that starts, and a sink that comes back after
retention deleted what it had not read says so instead of jumping silently."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from agents.sink_group import Gap, SinkGroup, SinkMessage
from schemas.settings import Settings
from streams.crashes import CRASH_LIMIT, CrashLedger
from tests.integration.kafka_tools import produce


@dataclass(frozen=True)
class Held:
    topic: str
    partition: int
    offset: int


def test_crash_counts_add_up_across_workers_through_the_ledger(pipeline: Settings) -> None:
    bootstrap, topic = pipeline.kafka.bootstrap_servers, pipeline.topics.crashes
    held = [Held("fleet.curated.v1", 2, 41), Held("fleet.curated.v1", 2, 42)]
    for crash in range(CRASH_LIMIT):
        worker = CrashLedger(bootstrap, topic)  # a worker starting after the last crash
        worker.load()
        assert worker.count("sink-postgres", held[0]) == crash
        worker.record("sink-postgres", held[:1] if crash else held, RuntimeError(f"crash {crash}"))
    starting = CrashLedger(bootstrap, topic)
    starting.load()
    assert starting.is_poison("sink-postgres", held[0])
    assert starting.count("sink-postgres", held[1]) == 1
    assert not starting.is_poison("device-state", held[0])  # counted per agent
    assert "crash 2" in starting.last_error("sink-postgres", held[0])


async def _consume(group: SinkGroup, wanted: int) -> tuple[list[SinkMessage], list[Gap]]:
    seen: list[SinkMessage] = []
    gaps: list[Gap] = []
    done = asyncio.Event()

    async def handle(messages: list[SinkMessage]) -> None:
        seen.extend(messages)
        if len(seen) >= wanted:
            done.set()

    async def on_gap(gap: Gap) -> None:
        gaps.append(gap)

    task = asyncio.create_task(group.run(handle, on_gap))
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return seen, gaps


async def test_a_sink_back_after_retention_deleted_its_records_reports_the_gap(
    pipeline: Settings,
) -> None:
    bootstrap, topic = pipeline.kafka.bootstrap_servers, pipeline.topics.readings_1m
    first: list[tuple[bytes | None, bytes | None]] = [(b"k", b"first %d" % n) for n in range(10)]
    produce(bootstrap, topic, first)
    group = SinkGroup(pipeline, "sink-gap-test", [topic], batch_max=100)
    seen, gaps = await _consume(group, 10)  # a new group: from the start, no gap
    assert len(seen) == 10 and gaps == []
    produce(bootstrap, topic, [(b"k", b"second %d" % n) for n in range(10)])
    ends = {m.partition: m.offset + 1 for m in seen}
    deleted = {p: end + 5 for p, end in ends.items()}  # retention took 5 unread records of each
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in deleted.items()])
    for future in futures.values():
        future.result(timeout=30)
    seen, gaps = await _consume(SinkGroup(pipeline, "sink-gap-test", [topic], 100), 5)
    assert {(g.partition, g.first, g.end) for g in gaps} == {
        (p, ends[p], deleted[p]) for p in deleted
    }
    assert all(m.offset >= deleted[m.partition] for m in seen)

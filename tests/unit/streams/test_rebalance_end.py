"""The end of a rebalance, driven through Faust's own code: its recovery's last step, the loop
that hands fetched records to the agents, its seek to committed offsets and its commit.

Only the broker side is faked (a partition's log, the fetch position, the committed offset);
everything between the fetch and the commit is Faust 0.15.3 with the worker's patches
(``streams.faust_compat``), so a change in Faust's order of steps shows here first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from tests.support import wait_until
from tests.unit.streams.worker_app import worker_app

RAW_0 = TP("raw", 0)
GENERATION = 7


class Log:
    """One partition's records as a broker serves them: fetches from a position, in batches."""

    def __init__(self, tp: TP, end: int, position: int, batch: int) -> None:
        self.tp = tp
        self.end = end
        self.position = position
        self.batch = batch
        self.on_fetch: Any = None

    async def getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109 - Faust passes the fetch timeout by this name
    ) -> Any:
        if active_partitions is None or self.tp not in active_partitions:
            await asyncio.sleep(0.005)
            return {}
        upto = min(self.end, self.position + self.batch)
        records = [self._record(offset) for offset in range(self.position, upto)]
        self.position = upto
        if self.on_fetch is not None:
            self.on_fetch()
        if not records:
            await asyncio.sleep(0.005)
            return {}
        return {self.tp: records}

    def _record(self, offset: int) -> ConsumerRecord[bytes, bytes]:
        tp = self.tp
        value = f"reading {offset}".encode()
        return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, None, value, None, 0, 0, ())


async def _until(condition: Callable[[], bool], what: str) -> None:
    async def holds() -> bool:
        return condition()

    await wait_until(holds, timeout_s=10, what=what, poll_s=0.002)


async def test_records_handed_out_while_the_rebalance_seeks_are_not_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The three-broker test's lost reading (docs/scaling.md), step by step. The rebalance's
    last step resumes the raw partition, then seeks it to its committed offset, 48. Meanwhile
    Faust's fetch loop (its records fetched from 48 before the seek) hands 48 to the agent's
    queue. When the seek returns, Faust sets its read position to 48 and resumes flow control,
    which empties the agents' queues though the flow was running: 48 goes. The loop goes on
    with 49 (one past its read position: no gap), and the records read again from 48 are
    dropped as already handed out. 49 and later are acked, and Faust commits 60, since it
    takes a committed offset of 48 to mean 48 was handled: 48 never reached the agent, and
    nothing was logged. Catches: a resume that empties the queues while the flow runs."""
    app = worker_app(tmp_path)
    consumer = cast(Any, app.consumer)
    source = app.topic("raw", key_serializer="raw", value_serializer="raw")
    channel = cast(Any, source.__aiter__())  # what the agent reads, known to the conductor
    await cast(Any, app.topics)._update_indices()
    await app.topics.on_partitions_assigned({RAW_0})
    log = Log(RAW_0, end=60, position=48, batch=12)
    fetched = asyncio.Event()
    log.on_fetch = fetched.set
    committed: list[dict[TP, int]] = []

    async def seek_to_committed() -> dict[TP, int]:
        await fetched.wait()  # the broker answers once the loop has records to hand out
        log.position = 48
        return {RAW_0: 48}

    async def commit(offsets: dict[TP, int]) -> bool:
        committed.append(dict(offsets))
        return True

    async def started() -> None:
        return None  # the fetch loop below is the fetcher

    consumer._getmany = log.getmany
    consumer.seek_to_committed = seek_to_committed
    consumer._commit = commit
    consumer.highwater = lambda tp: log.end
    consumer.assignment = lambda: {RAW_0}
    cast(Any, app)._fetcher.maybe_start = started

    # Where a rebalance leaves the worker when its recovery ends: a new generation, the flow
    # running (recovery resumed it), source partitions paused until the seek.
    app.consumer_generation_id = GENERATION
    app.flow_control.resume()
    consumer.resume_flow()
    consumer.pause_partitions({RAW_0})
    handed_out: list[int] = []

    async def agent() -> None:
        while True:
            event = await channel.queue.get()
            message = event.message
            message.tracked = True
            consumer._unacked_messages.add(message)
            handed_out.append(message.offset)
            message.ack(consumer)

    tasks = [asyncio.ensure_future(consumer._drain_messages(faust.Service()))]
    try:
        with caplog.at_level("WARNING", logger="streams.faust_compat"):
            recovery_end = cast(Any, app.tables).recovery.on_recovery_completed(GENERATION)
            tasks.append(asyncio.ensure_future(recovery_end))
            await _until(tasks[1].done, "the end of the rebalance")
            tasks.append(asyncio.ensure_future(agent()))
            await _until(lambda: 59 in handed_out and channel.queue.empty(), "the log read")
            await consumer.commit()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        consumer._thread.thread_loop.close()
    assert tasks[1].exception() is None
    assert committed == [{RAW_0: 60}]
    assert set(range(48, 60)) <= set(handed_out)  # every committed record reached the agent
    assert "handed out before a seek" not in caplog.text  # no gap was counted
    assert "which no agent has acked" not in caplog.text


async def test_a_commit_past_an_offset_no_agent_acked_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Faust commits past its committed offset once the next one is acked, whether or not the
    record at the committed offset was: the worker names that record. Catches: a warning that
    stays silent when Faust skips it, or that fires on an ordinary in-order commit."""
    from faust.types.tuples import Message

    app = worker_app(tmp_path)
    consumer = cast(Any, app.consumer)
    cast(Any, app.topics)._acking_topics.add("raw")
    app.consumer_generation_id = GENERATION
    consumer._committed_offset[RAW_0] = 48
    app.flow_control.resume()

    def ack(offset: int) -> None:
        made = Message("raw", 0, offset, 0.0, 0, None, None, b"{}", None, generation_id=GENERATION)
        made.tracked = True
        consumer._unacked_messages.add(made)
        assert consumer.ack(made) is True

    try:
        with caplog.at_level("WARNING", logger="streams.faust_compat"):
            for offset in (49, 50):
                ack(offset)
            assert consumer._new_offset(RAW_0) == 51  # Faust's own answer: past 48
            consumer._committed_offset[RAW_0] = 51
            for offset in (51, 52):
                ack(offset)
            assert consumer._new_offset(RAW_0) == 53
    finally:
        consumer._thread.thread_loop.close()
    assert [r.getMessage() for r in caplog.records] == [
        "committing raw[0] at 51, past offset 48, which no agent has acked (lost unless an "
        "agent still has it)"
    ]

"""Worker metrics: batches counted and timed from take to last ack, attributed to their agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.deadletters import dead_letter
from streams import metrics
from streams.metrics import AGENT, METRICS, MeteredStream, WorkerMetrics, metered_handler, timed
from streams.retry import retry_until_done
from tests import clock


@dataclass
class Message:
    topic: str
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"dev-1"
    value: bytes | None = b"{}"
    timestamp: float = 0.0
    headers: Any = None


@dataclass(eq=False)
class Event:
    message: Message


@dataclass
class FakeStream:
    batches: list[list[Event]]
    acked: list[Event] = field(default_factory=list)
    closed: bool = False
    other: str = "passes through"

    async def _take(self) -> AsyncIterator[list[Event]]:
        try:
            for batch in self.batches:
                yield batch
        finally:
            self.closed = True

    def noack_take(self, max_: int, within: float) -> AsyncIterator[list[Event]]:
        return self._take()

    async def ack(self, event: Event) -> bool:
        self.acked.append(event)
        return True


def sample(registry: WorkerMetrics, name: str, **labels: str) -> float:
    value = registry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_batches_are_counted_per_topic_and_timed_until_their_last_ack() -> None:
    registry = WorkerMetrics()
    first = [Event(Message("raw")), Event(Message("raw")), Event(Message("other"))]
    second = [Event(Message("raw"))]
    stream = FakeStream([first, second])
    metered = MeteredStream("validate", stream, registry)
    batches = metered.noack_take(10, 0.1)
    taken = [await anext(batches), await anext(batches)]  # both in flight at once
    assert taken == [first, second]
    assert sample(registry, "fleet_agent_events_total", agent="validate", topic="raw") == 3
    assert sample(registry, "fleet_agent_events_total", agent="validate", topic="other") == 1
    assert sample(registry, "fleet_agent_batch_size_sum", agent="validate") == 4
    assert sample(registry, "fleet_agent_batch_size_count", agent="validate") == 2

    timed_batches = "fleet_agent_batch_seconds_count"
    assert await metered.ack(second[0]) is True
    assert sample(registry, timed_batches, agent="validate") == 1  # the second batch is done
    for event in first[:2]:
        await metered.ack(event)
    assert sample(registry, timed_batches, agent="validate") == 1  # one record still open
    await metered.ack(first[2])
    await metered.ack(first[2])  # a repeated ack is forwarded but times nothing twice
    assert sample(registry, timed_batches, agent="validate") == 2
    assert stream.acked == [second[0], *first, first[2]]
    assert registry.totals()["events", "validate", "raw"] == 3
    assert metered.other == "passes through"


async def test_closing_the_metered_batches_closes_fausts_generator() -> None:
    stream = FakeStream([[Event(Message("raw"))], [Event(Message("raw"))]])
    batches = MeteredStream("sink-postgres", stream, WorkerMetrics()).noack_take(10, 0.1)
    await anext(batches)
    await batches.aclose()  # type: ignore[attr-defined]
    assert stream.closed


async def test_a_metered_stream_names_the_running_task() -> None:
    async def agent() -> str:
        MeteredStream("device-status", FakeStream([]), WorkerMetrics())
        return AGENT.get()

    assert await asyncio.create_task(agent()) == "device-status"
    assert AGENT.get() == "other"  # set in the agent's task only


async def test_retries_publishes_and_dead_letters_count_under_the_agent() -> None:
    before = METRICS.totals()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("broker away")
        return "done"

    async def handle(messages: list[Message]) -> None:
        await retry_until_done(
            flaky,
            what="test",
            is_retriable=lambda exc: True,
            backoff_max_s=0.01,
            backoff_start_s=0.001,
        )
        letter = dead_letter("sink.test", messages[0], ValueError("bad"), clock.now())
        METRICS.published({"dlq": [letter], "empty": []})

    async def sink_task() -> None:  # a task of its own, as the sink group's
        await metered_handler("sink-test", handle)([Message("curated")] * 3)

    await asyncio.create_task(sink_task())
    after = METRICS.totals()

    def delta(key: metrics.Key) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert delta(("events", "sink-test", "curated")) == 3
    assert delta(("retries", "sink-test", "")) == 1
    assert delta(("dead_letters", "sink.test", "")) == 1
    assert delta(("produced", "sink-test", "dlq")) == 1
    assert ("produced", "sink-test", "empty") not in after


class Store:
    def __init__(self) -> None:
        self.fail = False
        self.name = "store"

    async def write(self, rows: list[int]) -> int:
        if self.fail:
            raise ConnectionError("down")
        return len(rows)

    async def close(self) -> None:
        self.name = "closed"


async def test_timed_sink_writes_observe_every_attempt_and_count_failures() -> None:
    store = Store()
    wrapped = timed(store, "test-sink")

    def count(name: str) -> float:
        value = METRICS.registry.get_sample_value(name, {"sink": "test-sink"})
        return 0.0 if value is None else value

    before = (count("fleet_sink_write_seconds_count"), count("fleet_sink_write_failures_total"))
    assert await wrapped.write([1, 2]) == 2
    store.fail = True
    with pytest.raises(ConnectionError):
        await wrapped.write([1])
    await wrapped.close()  # not a write: passes through untimed
    after = (count("fleet_sink_write_seconds_count"), count("fleet_sink_write_failures_total"))
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)
    assert (wrapped.name, store.name) == ("closed", "closed")


async def test_an_agent_waiting_on_a_service_is_listed_until_its_retry_succeeds() -> None:
    attempts = iter([ConnectionError("refused"), ConnectionError("refused again"), None])
    seen: list[dict[str, str]] = []

    async def write() -> str:
        error = next(attempts)
        seen.append(metrics.METRICS.waiting_now())
        if error is not None:
            raise error
        return "written"

    token = metrics.AGENT.set("sink-test")
    try:
        result = await retry_until_done(
            write,
            what="writing to Test",
            is_retriable=lambda _: True,
            backoff_max_s=0.01,
            backoff_start_s=0.001,
        )
    finally:
        metrics.AGENT.reset(token)
    assert result == "written"
    assert seen[0] == {}
    assert seen[2]["sink-test"].startswith("writing to Test: ConnectionError('refused again')")
    assert "sink-test" not in metrics.METRICS.waiting_now()

"""Worker metrics: what the agents do, counted where it happens, in one Prometheus registry.

Agents need (almost) no code for it:

* :func:`streams.context.guarded` hands each Faust agent a :class:`MeteredStream`: records taken
  per agent and topic, batch sizes, and each batch's processing time, from being taken to its
  last record acked (so agents that keep several batches in flight are timed right too);
* sink groups (``agents.sink_group``) wrap their handler with :func:`metered_handler`;
* ``WorkerContext.publish`` counts the records produced per agent and topic,
  ``retry_until_done`` the retried attempts, ``dead_letter()`` the letters per stage;
* sinks wrap their store with :func:`timed`: every write attempt to Postgres or Redis is timed;
* the Postgres sink observes each committed row's age, from its reading's ``ts`` to the commit
  (``fleet_reading_to_row_seconds``, a :class:`BatchHistogram`: one lock per batch).

The running agent's name travels in a context variable (:data:`AGENT`) set by those wrappers, so
retries and publishes are counted under the agent that made them. Counting happens once per
batch (a Prometheus update per reading would cost more than many readings' processing).

One instance per process (:data:`METRICS`): a worker process runs one Faust app. The web views
read :meth:`WorkerMetrics.totals` to compute rates; ``/metrics`` exposes :attr:`registry`.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

T = TypeVar("T")

AGENT: ContextVar[str] = ContextVar("fleet_agent", default="other")
"""The agent (or sink) the running task belongs to."""

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
END_TO_END = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
"""Buckets of the reading → row latency: sub-second when all is well, minutes after an outage."""
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

Key = tuple[str, str, str]
"""``(kind, label, label)`` of :meth:`WorkerMetrics.totals`: ``("events", agent, topic)``,
``("produced", agent, topic)``, ``("dead_letters", stage, "")``, ``("retries", agent, "")``."""


class BatchHistogram(Collector):
    """A label-less histogram filled a batch at a time: :meth:`observe_many` bins a batch's
    values with ``bisect`` under one lock (prometheus_client's ``observe`` costs a lock and a
    bucket scan per value, too much per reading). Exposed as an ordinary histogram."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Sequence[float]) -> None:
        bounds, bins = self.bounds, [0] * len(self._counts)
        for value in values:
            bins[bisect_left(bounds, value)] += 1
        total = sum(values)
        with self._lock:
            self._counts = [mine + new for mine, new in zip(self._counts, bins, strict=True)]
            self._sum += total

    def counts(self) -> list[int]:
        """A copy of the counts per bucket (not cumulative; the last one above every bound)."""
        with self._lock:
            return list(self._counts)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, total)
        yield family


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "fleet_agent_events", "Kafka records taken by the agent", ["agent", "topic"], registry=r
        )
        self.batch_size = Histogram(
            "fleet_agent_batch_size",
            "records per taken batch",
            ["agent"],
            buckets=SIZES,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "fleet_agent_batch_seconds",
            "from taking a batch to acking its last record",
            ["agent"],
            buckets=SECONDS,
            registry=r,
        )
        self.produced = Counter(
            "fleet_agent_records_produced",
            "records produced and acked by the broker",
            ["agent", "topic"],
            registry=r,
        )
        self.retries = Counter(
            "fleet_agent_retries", "attempts retried after an outage", ["agent"], registry=r
        )
        self.dead_letters = Counter(
            "fleet_dead_letters", "dead letters made, by stage", ["stage"], registry=r
        )
        self.sink_seconds = Histogram(
            "fleet_sink_write_seconds",
            "one write attempt of a sink to its service",
            ["sink"],
            buckets=SECONDS,
            registry=r,
        )
        self.sink_failures = Counter(
            "fleet_sink_write_failures", "write attempts that raised", ["sink"], registry=r
        )
        self.waiting_gauge = Gauge(
            "fleet_agent_waiting",
            "1 while the agent or sink waits for a service that is away or refusing",
            ["agent"],
            registry=r,
        )
        self.reading_to_row = BatchHistogram(
            "fleet_reading_to_row_seconds",
            "from a reading's timestamp (ts) to its row committed in Postgres",
            END_TO_END,
        )
        r.register(self.reading_to_row)
        self._waiting: dict[str, str] = {}
        self._totals: Tally[Key] = Tally()

    def totals(self) -> dict[Key, float]:
        """A copy of every count so far (rates are differences of two copies)."""
        return dict(self._totals)

    def taken(self, agent: str, topics: Mapping[str, int]) -> None:
        size = 0
        for topic, count in topics.items():
            self.events.labels(agent, topic).inc(count)
            self._totals["events", agent, topic] += count
            size += count
        self.batch_size.labels(agent).observe(size)

    def batch_done(self, agent: str, seconds: float) -> None:
        self.batch_seconds.labels(agent).observe(seconds)

    def published(self, by_topic: Mapping[str, Sequence[object]]) -> None:
        agent = AGENT.get()
        for topic, records in by_topic.items():
            if records:
                self.produced.labels(agent, topic).inc(len(records))
                self._totals["produced", agent, topic] += len(records)

    def retried(self) -> None:
        agent = AGENT.get()
        self.retries.labels(agent).inc()
        self._totals["retries", agent, ""] += 1

    def waiting(self, reason: str) -> None:
        """The current agent waits for a service; ``reason`` names it and its last error."""
        agent = AGENT.get()
        self._waiting[agent] = reason
        self.waiting_gauge.labels(agent).set(1)

    def resumed(self) -> None:
        agent = AGENT.get()
        if self._waiting.pop(agent, None) is not None:
            self.waiting_gauge.labels(agent).set(0)

    def waiting_now(self) -> dict[str, str]:
        """Agent → why it waits, for the agents that wait now."""
        return dict(self._waiting)

    def dead_lettered(self, stage: str) -> None:
        self.dead_letters.labels(stage).inc()
        self._totals["dead_letters", stage, ""] += 1

    def sink_write(self, sink: str, seconds: float, *, failed: bool) -> None:
        self.sink_seconds.labels(sink).observe(seconds)
        if failed:
            self.sink_failures.labels(sink).inc()


METRICS = WorkerMetrics()


class _Message(Protocol):
    topic: str


def _topics(messages: Iterable[_Message]) -> Tally[str]:
    return Tally(message.topic for message in messages)


@dataclass
class _Batch:
    started: float
    remaining: int


class MeteredStream:
    """A Faust stream as an agent sees it: ``noack_take`` and ``ack`` counted and timed, every
    other attribute the stream's own. Creating one names the running task after ``agent``."""

    def __init__(self, agent: str, stream: Any, metrics: WorkerMetrics = METRICS) -> None:
        AGENT.set(agent)
        self._agent = agent
        self._stream = stream
        self._metrics = metrics
        self._open: dict[int, _Batch] = {}
        self._events: dict[int, Any] = {}

    def noack_take(self, max_: int, within: float) -> AsyncIterator[Sequence[Any]]:
        return self._batches(self._stream.noack_take(max_, within))

    async def _batches(self, batches: Any) -> AsyncIterator[Sequence[Any]]:
        try:
            async for events in batches:
                batch = _Batch(time.perf_counter(), len(events))
                for event in events:
                    self._open[id(event)] = batch
                    self._events[id(event)] = event
                self._metrics.taken(self._agent, _topics(event.message for event in events))
                yield events
        finally:
            # Closing this generator closes Faust's (its own ``finally`` re-arms the buffer).
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()

    async def ack(self, event: Any) -> Any:
        acked = await self._stream.ack(event)
        self._events.pop(id(event), None)
        batch = self._open.pop(id(event), None)
        if batch is not None:
            batch.remaining -= 1
            if batch.remaining == 0:
                self._metrics.batch_done(self._agent, time.perf_counter() - batch.started)
        return acked

    def in_hand(self) -> list[Any]:
        """The events taken and not acked yet (what a crash would leave unfinished)."""
        return list(self._events.values())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def metered(agent: str, stream: Any) -> Any:
    """``stream`` counted and timed under ``agent`` (see :class:`MeteredStream`)."""
    return MeteredStream(agent, stream)


def metered_handler(
    agent: str, handle: Callable[[list[T]], Awaitable[None]]
) -> Callable[[list[T]], Awaitable[None]]:
    """A sink group's batch handler, counted and timed like an agent's batches."""

    async def metered_handle(messages: list[T]) -> None:
        AGENT.set(agent)
        started = time.perf_counter()
        METRICS.taken(agent, _topics(cast(list[_Message], messages)))
        await handle(messages)
        METRICS.batch_done(agent, time.perf_counter() - started)

    return metered_handle


class _Timed:
    def __init__(self, target: Any, sink: str, methods: frozenset[str]) -> None:
        self._target = target
        self._sink = sink
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in self._methods:
            return attribute
        sink = self._sink

        async def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            failed = True
            try:
                result = await attribute(*args, **kwargs)
                failed = False
                return result
            finally:
                METRICS.sink_write(sink, time.perf_counter() - started, failed=failed)

        return timed_call


def timed(target: T, sink: str, *methods: str) -> T:
    """``target`` with each call of its coroutine ``methods`` (default ``write``) timed as one
    write attempt of ``sink``; everything else passes through."""
    return cast(T, _Timed(target, sink, frozenset(methods or ("write",))))

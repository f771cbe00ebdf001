"""A sink in its own consumer group, inside the worker process.

Sinks that depend on a service the stream core does not need (Redis) run as a confluent-kafka
consumer in a consumer group of their own (``<app_id>.<name>``), not as Faust agents. Faust
pauses a partition for *every* agent reading it once one agent's buffer is full, so a sink
stalled by its service would, after a bounded buffer, stall the status table and the rollups on
the same topic, and the status timer would then call devices offline that are only waiting in
Kafka. In a group of its own a sink can wait out its outage for as long as it lasts, while the
rest of the worker goes on; it resumes from its own committed offsets.

Delivery: offsets are stored only after ``handle`` returned (the batch's writes are durable),
and librdkafka commits stored offsets in the background and when partitions are revoked or the
consumer closes. Anything ``handle`` raises stops the worker, like an agent (``guarded``): the
batch is redelivered to whoever takes the partitions over.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from agents.isolation import isolate, partition_poison
from connectors.kafka.producer import Record
from connectors.kafka.security import client_config
from schemas.contract_wire import encode_dead_letter
from schemas.events import DeadLetter
from schemas.settings import Settings
from streams.context import WorkerContext, stop_worker
from streams.metrics import METRICS, metered_handler
from streams.outputs import Outputs

log = logging.getLogger(__name__)

MAX_POLL_INTERVAL_MS = 3_600_000
"""A sink waiting out an outage does not poll; an hour before the group gives up on it."""
POLL_WATCHDOG_S = 300.0
"""A poll (seconds long at most, plus the assignment callback's 10 s broker calls per
partition) that has not returned in this long lost its thread: an exception escaping a
librdkafka callback has killed one without failing the future the sink awaits. The worker then
stops, to be restarted, rather than wait for good (``PollLost``)."""


class PollLost(RuntimeError):
    """The sink's poll never returned: its thread died or hangs."""


@dataclass(slots=True)
class SinkMessage:
    """A consumed record with the attributes agents read (``agents.deadletters.KafkaMessage``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float
    headers: Any


Handler = Callable[[list[SinkMessage]], Awaitable[None]]


@dataclass(frozen=True)
class Gap:
    """Records a sink never read: deleted by retention while it was away."""

    sink: str
    topic: str
    partition: int
    first: int
    """The sink's committed offset: the first record it missed."""
    end: int
    """The log's start when it came back: the first record it will read."""

    def describe(self) -> str:
        return (
            f"{self.end - self.first} records of {self.topic}[{self.partition}] (offsets "
            f"{self.first}..{self.end - 1}) were deleted by retention before this sink read "
            f"them; their readings are on the raw topic while it keeps them (deadletters replay)"
        )


GapHandler = Callable[[Gap], Awaitable[None]]


def group_id(settings: Settings, name: str) -> str:
    return f"{settings.worker.app_id}.{name}"


def consumer_config(settings: Settings, name: str) -> dict[str, Any]:
    kafka = settings.kafka
    return {
        **client_config(kafka.bootstrap_servers, kafka),
        "group.id": group_id(settings, name),
        "client.id": f"{settings.worker.app_id}-{name}",
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": int(settings.worker.commit_interval_s * 1000),
        # Also where retention deleted a committed offset: that gap is reported on assignment
        # (SinkGroup._gaps_of), never a silent jump.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": int(kafka.session_timeout_s * 1000),
        "heartbeat.interval.ms": int(kafka.heartbeat_interval_s * 1000),
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
    }


def _adapt(message: Message) -> SinkMessage:
    _, timestamp_ms = message.timestamp()
    return SinkMessage(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        timestamp=timestamp_ms / 1000 if timestamp_ms > 0 else 0.0,
        headers=message.headers(),
    )


def next_offsets(messages: Sequence[SinkMessage]) -> list[TopicPartition]:
    """The offsets to store after ``messages``: one past the last of each partition."""
    ends: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic, message.partition)
        ends[key] = max(ends.get(key, -1), message.offset + 1)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in ends.items()]


class SinkGroup:
    """Consume ``topics`` in batches and hand each batch to a handler, until cancelled."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        topics: Sequence[str],
        batch_max: int,
        within_s: float | None = None,
        linger_s: float | None = None,
    ) -> None:
        """``within_s``: longest wait to fill a batch (default ``FLEET_WORKER__BATCH_WITHIN_S``);
        a sink whose cost is per key, not per record, waits longer to merge more.

        ``linger_s``: if given, a batch goes this long after its first record, full or not
        (``within_s`` then bounds the wait for that first record). For a sink on the request
        → row path: validate sends its curated envelopes in a burst per batch, so a batch that
        waited out a whole window after the burst only added latency."""
        self.name = name
        self._config = consumer_config(settings, name)
        self._topics = list(topics)
        self._batch_max = batch_max
        self._within_s = settings.worker.batch_within_s if within_s is None else within_s
        self._linger_s = linger_s
        self.in_hand: list[SinkMessage] = []
        """The batch being handled: what a crash would leave unfinished."""
        self.poll_watchdog_s = POLL_WATCHDOG_S

    def new_consumer(self) -> Consumer:
        return Consumer(self._config)

    async def run(self, handle: Handler, on_gap: GapHandler | None = None) -> None:
        consumer = self.new_consumer()
        found: list[Gap] = []
        consumer.subscribe(
            self._topics, on_assign=lambda c, parts: found.extend(self._gaps_of(c, parts))
        )
        polling: asyncio.Future[list[Message]] | None = None
        loop = asyncio.get_running_loop()
        lost = False
        try:
            while True:
                polling = loop.run_in_executor(None, self.take, consumer)
                consumed = await self._watched(polling)
                polling = None
                gaps, found[:] = list(found), []
                for gap in gaps:
                    log.error("sink %s: %s", self.name, gap.describe())
                    if on_gap is not None:
                        await on_gap(gap)
                messages = [_adapt(m) for m in consumed if self._usable(m)]
                if not messages:
                    continue
                self.in_hand = messages
                await handle(messages)
                self._store(consumer, messages)
                self.in_hand = []
        except PollLost:
            lost = True  # its thread is gone or stuck: neither wait for it nor close under it
            raise
        finally:
            if not lost:
                if polling is not None:  # never close the consumer while a thread polls it
                    await asyncio.wait([polling])
                await asyncio.to_thread(consumer.close)

    async def _watched(self, polling: asyncio.Future[list[Message]]) -> list[Message]:
        try:
            return await asyncio.wait_for(asyncio.shield(polling), self.poll_watchdog_s)
        except TimeoutError:
            raise PollLost(
                f"sink {self.name}: a poll has not returned in {self.poll_watchdog_s:.0f} s"
            ) from None

    def take(self, consumer: Consumer) -> list[Message]:
        """The next batch (blocks: runs in a thread)."""
        if self._linger_s is None:
            return consumer.consume(self._batch_max, self._within_s)
        first = consumer.consume(1, self._within_s)
        if not first or self._batch_max == 1:
            return first
        return first + consumer.consume(self._batch_max - 1, self._linger_s)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("sink %s: consumer error: %s", self.name, error)
        return False

    def _gaps_of(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[Gap]:
        """The assigned partitions whose committed offset retention deleted (reading goes on
        from the log's start there). Runs in the consuming thread, inside its poll.

        Nothing may escape: an exception raised in this callback comes out of ``consume`` in a
        form that killed the executor thread without failing its future (seen with a broker
        killed under load), and the sink waited forever. A gap not looked for while brokers
        are away is logged instead."""
        try:
            return self._find_gaps(consumer, partitions)
        except Exception as exc:  # noqa: BLE001 - see above: a callback must not raise
            log.warning("sink %s: retention gaps not checked on assignment (%s)", self.name, exc)
            return []

    def _find_gaps(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[Gap]:
        gaps = []
        for committed in consumer.committed(partitions, timeout=10):
            if committed.offset < 0:  # nothing committed yet: a new group, no gap
                continue
            where = TopicPartition(committed.topic, committed.partition)
            low, _ = consumer.get_watermark_offsets(where, timeout=10)
            if committed.offset < low:
                gaps.append(
                    Gap(self.name, committed.topic, committed.partition, committed.offset, low)
                )
        return gaps

    def _store(self, consumer: Consumer, messages: Sequence[SinkMessage]) -> None:
        try:
            consumer.store_offsets(offsets=next_offsets(messages))
        except KafkaException as exc:  # partitions revoked meanwhile: the next owner rereads
            log.info(
                "sink %s: offsets not stored (%s); the batch will be redelivered", self.name, exc
            )


def isolating(ctx: WorkerContext, name: str, handle: Handler) -> Handler:
    """``handle``, with the records that crashed workers ``CRASH_LIMIT`` times taken apart
    (``agents.isolation``) instead of handled with the rest of their batch."""
    crashes = ctx.crashes
    if crashes is None:
        return handle
    ledger = crashes

    def is_poison(message: SinkMessage) -> bool:
        return ledger.is_poison(name, message)

    async def handle_isolating(messages: list[SinkMessage]) -> None:
        ordinary, poison = partition_poison(messages, is_poison)
        if ordinary:
            await handle(ordinary)
        if not poison:
            return
        letters = Outputs()
        for message in poison:
            error = ledger.last_error(name, message)
            parts = await isolate(name, handle, message, error, ctx.clock())
            letters.extend(ctx.settings.topics.deadletter, parts)
        await ctx.publish(letters)

    return handle_isolating


async def report_gap(ctx: WorkerContext, gap: Gap) -> None:
    """A gap is a dead letter (stage ``<sink>.gap``) and a count, never silent."""
    METRICS.dead_lettered(f"{gap.sink}.gap")
    letter = DeadLetter(
        stage=f"{gap.sink}.gap",
        reason=gap.describe(),
        error_type="RecordsDeleted",
        source_topic=gap.topic,
        partition=gap.partition,
        offset=gap.first,
        key=None,
        original=b"",
        failed_at=ctx.clock(),
    )
    outputs = Outputs()
    outputs.add(ctx.settings.topics.deadletter, Record(None, encode_dead_letter(letter)))
    await ctx.publish(outputs)


def start_sink(ctx: WorkerContext, group: SinkGroup, handle: Handler) -> None:
    """Run ``group`` as a task of the worker; anything escaping it stops the worker after the
    batch in hand is counted in the crash ledger."""

    crashes = ctx.crashes

    async def sink_task() -> None:
        try:
            handler = metered_handler(group.name, isolating(ctx, group.name, handle))
            await group.run(handler, functools.partial(report_gap, ctx))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - like guarded(): nothing escapes silently
            if crashes is not None:
                crashes.record(group.name, group.in_hand, exc)
            stop_worker(f"sink {group.name}", exc)

    ctx.app.task(sink_task)

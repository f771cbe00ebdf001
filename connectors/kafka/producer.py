"""An asyncio front for confluent-kafka's producer, used by the edges (HTTP, MQTT) and the worker.

Contract: ``produce_all`` returns only after the broker acked every record with ``acks=all``
(idempotent producer, so librdkafka's own retries never duplicate). It raises
:class:`ProducerBackpressure` when the local queue is full and :class:`KafkaUnavailable` when any
record was not acked within ``delivery_timeout_ms``: the edge turns those into 429/503, never a
2xx for data that is not in Kafka.

librdkafka reports deliveries from ``poll()``; a daemon thread polls and hands each report to
the event loop with ``call_soon_threadsafe``, so awaiting a batch costs no busy loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka.errors import KafkaRefused, KafkaUnavailable, ProducerBackpressure
from connectors.kafka.security import client_config
from schemas.settings import KafkaSettings, Settings


class Record(NamedTuple):
    """A Kafka record to produce. ``partition`` -1 lets the partitioner choose: murmur2 of the
    key, as Faust and Java do (see ``connectors.kafka.partitioner``)."""

    key: bytes | None
    value: bytes | None
    partition: int = -1
    headers: list[tuple[str, str | bytes | None]] | None = None


@dataclass(frozen=True)
class ProducerConfig:
    bootstrap_servers: str
    delivery_timeout_ms: int = 5000
    linger_ms: int = 5
    queue_max_messages: int = 100_000
    client_id: str = "fleetstream-api"
    message_max_bytes: int = 4 * 1024 * 1024
    #: Whose security settings to connect with (None: this process's settings).
    kafka: KafkaSettings | None = None

    def librdkafka(self) -> dict[str, Any]:
        return {
            **client_config(self.bootstrap_servers, self.kafka),
            "client.id": self.client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.linger_ms,
            "message.timeout.ms": self.delivery_timeout_ms,
            "queue.buffering.max.messages": self.queue_max_messages,
            "compression.type": "lz4",
            # Same placement as Faust/aiokafka/Java for keyed records (librdkafka's default is
            # CRC32, which puts most devices on another partition than Faust's tables expect).
            "partitioner": "murmur2_random",
            "message.max.bytes": self.message_max_bytes,
            # Fail fast on a dead bootstrap list instead of retrying DNS/connect for minutes.
            "socket.connection.setup.timeout.ms": min(self.delivery_timeout_ms, 10_000),
        }


def edge_producer_config(settings: Settings, client_id: str) -> ProducerConfig:
    """The producer of an edge that writes readings to ``fleet.raw.v1`` (the HTTP API, the MQTT
    bridge): delivery timeout, linger and queue bound from the Kafka settings."""
    kafka = settings.kafka
    return ProducerConfig(
        bootstrap_servers=kafka.bootstrap_servers,
        delivery_timeout_ms=kafka.delivery_timeout_ms,
        linger_ms=kafka.linger_ms,
        queue_max_messages=kafka.queue_max_messages,
        client_id=client_id,
        kafka=kafka,
    )


class EventProducer:
    """Owns one librdkafka producer and its poll thread; start once, stop once."""

    def __init__(self, config: ProducerConfig) -> None:
        self._config = config
        self._producer: Producer | None = None
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None

    async def start(self) -> None:
        self._producer = Producer(self._config.librdkafka())
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    async def stop(self, flush_timeout_s: float = 10.0) -> None:
        """Deliver what is queued (bounded by the timeout), then stop polling."""
        if self._producer is None:
            return
        producer = self._producer
        await asyncio.to_thread(producer.flush, flush_timeout_s)
        self._stopping.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, 5.0)
        self._producer = None

    async def produce_all(self, topic: str, records: Sequence[Record]) -> None:
        """Produce every record and wait until the broker acked all of them.

        One future per call, settled by the last delivery report: per-record futures and
        thread hops cost more than producing does.
        """
        producer = self._require_started()
        if not records:
            return
        batch = _BatchAck(asyncio.get_running_loop(), len(records))
        report = batch.report
        for index, (key, value, partition, headers) in enumerate(records):
            try:
                producer.produce(
                    topic, value, key, partition=partition, headers=headers, on_delivery=report
                )
            except BufferError as exc:
                batch.abandon(len(records) - index)
                await batch.settled()
                raise ProducerBackpressure("the Kafka producer queue is full") from exc
            except KafkaException as exc:
                batch.abandon(len(records) - index)
                await batch.settled()
                raise KafkaUnavailable(f"Kafka refused the record: {exc}") from exc
        await batch.wait()

    def queue_length(self) -> int:
        """Records handed to librdkafka and not yet acked (0 before start)."""
        return 0 if self._producer is None else len(self._producer)

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """True when a broker answered a metadata request within the timeout."""
        producer = self._require_started()
        try:
            await asyncio.to_thread(producer.list_topics, None, timeout_s)
        except KafkaException:
            return False
        return True

    async def partition_count(self, topic: str, timeout_s: float = 10.0) -> int:
        """How many partitions ``topic`` has (the edges place envelopes by it)."""
        producer = self._require_started()
        try:
            metadata = await asyncio.to_thread(producer.list_topics, topic, timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailable(f"no metadata for topic {topic}: {exc}") from exc
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise KafkaUnavailable(f"topic {topic} does not exist; run `fleetstream setup`")
        return len(described.partitions)

    def _require_started(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("EventProducer.start() was not called")
        return self._producer

    def _poll_forever(self) -> None:
        producer = self._producer
        while producer is not None and not self._stopping.is_set():
            producer.poll(0.05)


_REFUSALS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)
"""Delivery errors that retrying the same record cannot fix."""


class _BatchAck:
    """Counts the delivery reports of one batch (they arrive on the poll thread)."""

    __slots__ = ("_error", "_future", "_lock", "_loop", "_remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, total: int) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        self._remaining = total
        self._error: KafkaError | None = None
        self._lock = threading.Lock()

    def report(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            if err is not None and self._error is None:
                self._error = err
            self._remaining -= 1
            finished = self._remaining == 0
        if finished:
            self._loop.call_soon_threadsafe(self._settle)

    def abandon(self, count: int) -> None:
        """``count`` records were never produced: stop waiting for them."""
        with self._lock:
            self._remaining -= count
            finished = self._remaining == 0
        if finished:
            self._settle()

    def _settle(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def settled(self) -> None:
        """Wait for the reports of what was produced, whatever they say."""
        await self._future

    async def wait(self) -> None:
        """Wait for every report; raise if any record was not acked."""
        await self._future
        error = self._error
        if error is None:
            return
        if error.code() in _REFUSALS:
            raise KafkaRefused(f"Kafka refused a record: {error.str()}")
        raise KafkaUnavailable(f"Kafka did not ack a record: {error.str()}")

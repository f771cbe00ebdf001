"""An asyncio front for confluent-kafka's producer, used by the HTTP edge.

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
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure

Record = tuple[bytes, bytes]
"""A Kafka record as (key, value)."""


@dataclass(frozen=True)
class ProducerConfig:
    bootstrap_servers: str
    delivery_timeout_ms: int = 5000
    linger_ms: int = 5
    queue_max_messages: int = 100_000
    client_id: str = "fleetstream-api"

    def librdkafka(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.linger_ms,
            "message.timeout.ms": self.delivery_timeout_ms,
            "queue.buffering.max.messages": self.queue_max_messages,
            "compression.type": "lz4",
            # Fail fast on a dead bootstrap list instead of retrying DNS/connect for minutes.
            "socket.connection.setup.timeout.ms": min(self.delivery_timeout_ms, 10_000),
        }


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
        """Produce every record and wait until the broker acked all of them."""
        producer = self._require_started()
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        for key, value in records:
            done: asyncio.Future[None] = loop.create_future()
            try:
                producer.produce(topic, value, key, on_delivery=_reporter(loop, done))
            except BufferError as exc:
                done.cancel()
                await _settle(pending)
                raise ProducerBackpressure("the Kafka producer queue is full") from exc
            except KafkaException as exc:
                done.cancel()
                await _settle(pending)
                raise KafkaUnavailable(f"Kafka refused the record: {exc}") from exc
            pending.append(done)
        await _settle(pending, raise_first=True)

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """True when a broker answered a metadata request within the timeout."""
        producer = self._require_started()
        try:
            await asyncio.to_thread(producer.list_topics, None, timeout_s)
        except KafkaException:
            return False
        return True

    def _require_started(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("EventProducer.start() was not called")
        return self._producer

    def _poll_forever(self) -> None:
        producer = self._producer
        while producer is not None and not self._stopping.is_set():
            producer.poll(0.05)


def _reporter(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> Any:
    """A delivery callback (runs on the poll thread) that settles ``done`` on the loop."""

    def report(err: KafkaError | None, _msg: Message) -> None:
        loop.call_soon_threadsafe(_resolve, done, err)

    return report


def _resolve(done: asyncio.Future[None], err: KafkaError | None) -> None:
    if done.done():
        return
    if err is None:
        done.set_result(None)
    else:
        done.set_exception(KafkaUnavailable(f"Kafka did not ack the record: {err.str()}"))


async def _settle(pending: list[asyncio.Future[None]], *, raise_first: bool = False) -> None:
    """Wait for every pending delivery; optionally re-raise the first failure."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    if raise_first:
        for result in results:
            if isinstance(result, BaseException):
                raise result

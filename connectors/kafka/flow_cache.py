"""The flow registry followed in memory: every worker reads ``fleet.flows.v1`` from the start.

Like the device cache (:mod:`connectors.kafka.device_cache`): a daemon thread owns a consumer
*assigned* every partition from the beginning (no group, no commits), applies each record (a
document replaces the flow, a tombstone removes it) and counts changes in ``generation``, so the
flows agent rebuilds its compiled set only when something changed. ``wait_caught_up`` tells when
the topic was read up to the high watermarks seen at start: until then a worker does not know
every flow and must not run any (an alert rule would miss readings).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from connectors.kafka.device_cache import CatchUp
from connectors.kafka.errors import KafkaUnavailable
from schemas.flows import FlowDocument, decode_flow_document

log = logging.getLogger(__name__)

_POLL_S = 0.1
_RETRY_MAX_S = 5.0


class FlowIndex:
    """Flow documents by id; applied from one thread, read from others (single dict steps)."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowDocument] = {}
        self.generation = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            log.error("flow registry record without a key skipped")
            return
        flow_id = key.decode(errors="replace")
        if value is None:
            if self._flows.pop(flow_id, None) is not None:
                self.generation += 1
            return
        try:
            document = decode_flow_document(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("flow registry record for %s skipped: %s", flow_id, exc)
            return
        if document.flow_id != flow_id:
            log.error("flow record keyed %s is about %s; skipped", flow_id, document.flow_id)
            return
        self._flows[flow_id] = document
        self.generation += 1

    def documents(self) -> dict[str, FlowDocument]:
        return dict(self._flows)


class _Reader:
    def __init__(self, bootstrap_servers: str, topic: str, index: FlowIndex) -> None:
        self.topic = topic
        self.index = index
        self.catch_up: CatchUp | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"fleetstream-flow-cache-{uuid.uuid4()}",  # never joins or commits
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )

    def assign(self, timeout_s: float = 5.0) -> None:
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=timeout_s)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                reason = topic.error if topic is not None else "missing"
                raise KafkaUnavailable(f"flow registry topic {self.topic}: {reason}")
            watermarks = {
                p: self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=timeout_s
                )
                for p in sorted(topic.partitions)
            }
        except KafkaException as exc:
            raise KafkaUnavailable(f"flow registry topic {self.topic}: {exc}") from exc
        self.catch_up = CatchUp.from_watermarks(watermarks)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in watermarks])

    def poll(self, timeout_s: float = _POLL_S) -> None:
        message = self._consumer.poll(timeout_s)
        if message is not None:
            self._handle(message)

    def close(self) -> None:
        self._consumer.close()

    def _handle(self, message: Message) -> None:
        error = message.error()
        partition = message.partition() or 0
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if self.catch_up is not None:
                    self.catch_up.at_end(partition)
            else:
                log.warning("flow registry topic %s: %s", self.topic, error.str())
            return
        self.index.apply(message.key(), message.value())
        if self.catch_up is not None:
            self.catch_up.read(partition, message.offset() or 0)


def read_flows(bootstrap_servers: str, topic: str, timeout_s: float = 30.0) -> FlowIndex:
    """The flow registry as the topic holds it now (``flows resync``)."""
    index = FlowIndex()
    reader = _Reader(bootstrap_servers, topic, index)
    try:
        reader.assign(timeout_s)
        deadline = time.monotonic() + timeout_s
        while reader.catch_up is not None and not reader.catch_up.done:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {topic} to its end in {timeout_s}s")
            reader.poll()
    finally:
        reader.close()
    return index


class FlowCache:
    """One worker's copy of the flow registry: ``start()`` once, ``stop()`` once."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self.index = FlowIndex()
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int:
        return self.index.generation

    def documents(self) -> dict[str, FlowDocument]:
        return self.index.documents()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flow-cache", daemon=True)
        self._thread.start()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        return await asyncio.to_thread(self._caught_up.wait, timeout_s)

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
            self._thread = None

    def _run(self) -> None:
        reader = _Reader(self._bootstrap, self.topic, self.index)
        try:
            delay = 0.2
            while not self._stopping.is_set():
                try:
                    reader.assign()
                    break
                except KafkaUnavailable as exc:
                    log.warning("flow cache waiting for Kafka: %s", exc)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
            while not self._stopping.is_set():
                reader.poll()
                if not self._caught_up.is_set() and reader.catch_up and reader.catch_up.done:
                    log.info("flow cache caught up with %s", self.topic)
                    self._caught_up.set()
        finally:
            reader.close()

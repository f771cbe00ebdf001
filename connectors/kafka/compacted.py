"""Following a compacted registry topic in memory (devices, flows): one reader, one follower.

A reader owns a confluent-kafka ``Consumer`` that is *assigned* every partition from the
beginning: no consumer group, no committed offsets, each process reads the whole topic and hands
every record to an index (``apply(key, value)``; a ``None`` value is a tombstone). It is
**caught up** once it has read every partition up to the high watermark it saw when it was
assigned. :class:`TopicFollower` runs a reader on a daemon thread for the life of a process;
:func:`read_to_end` reads the topic once (the CLI's ``resync``).

:class:`DocumentIndex` is the index of a registry (documents by id, the latest wins, a tombstone
removes) and :class:`DocumentCache` the follower that keeps one: the device cache
(:mod:`connectors.kafka.device_cache`) and the flow cache (:mod:`connectors.kafka.flow_cache`)
are these two with what their kind adds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.security import client_config

log = logging.getLogger(__name__)

_POLL_S = 0.1
_RETRY_MAX_S = 5.0

D = TypeVar("D")


class RecordIndex(Protocol):
    """What a reader feeds: the latest record per key wins, a ``None`` value removes the key."""

    def apply(self, key: bytes | None, value: bytes | None) -> None: ...


Index = TypeVar("Index", bound=RecordIndex)


class DocumentIndex(Generic[D]):
    """A registry's documents by id: a document replaces the one before, a tombstone removes it.

    Applied from one thread, read from others: each step is a single dict operation, atomic
    under the GIL. A record that cannot be decoded, or whose key is not its document's id, is
    logged and skipped: it must not stop the reader. Subclasses keep more through the
    :meth:`_stored` and :meth:`_removed` hooks.
    """

    label = "registry"
    """How log lines name the topic's records."""

    def __init__(self, decode: Callable[[bytes], D], id_of: Callable[[D], str]) -> None:
        self._documents: dict[str, D] = {}
        self._decode = decode
        self._id_of = id_of

    def __len__(self) -> int:
        return len(self._documents)

    def get(self, record_id: str) -> D | None:
        return self._documents.get(record_id)

    def documents(self) -> dict[str, D]:
        """A copy of every document, by id."""
        return dict(self._documents)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one registry record: a document replaces the record, a tombstone removes it."""
        if key is None:
            log.error("%s record without a key skipped", self.label)
            return
        record_id = key.decode(errors="replace")
        if value is None:
            self._removed(record_id, self._documents.pop(record_id, None))
            return
        try:
            document = self._decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s record for %s skipped: %s", self.label, record_id, exc)
            return
        about = self._id_of(document)
        if about != record_id:
            log.error("%s record keyed %s is about %s; skipped", self.label, record_id, about)
            return
        previous = self._documents.get(record_id)
        self._documents[record_id] = document
        self._stored(document, previous)

    def _stored(self, document: D, previous: D | None) -> None:
        """Called after ``document`` replaced ``previous`` (None: it is new)."""

    def _removed(self, record_id: str, previous: D | None) -> None:
        """Called after a tombstone for ``record_id`` removed ``previous`` (None: unknown)."""


@dataclass
class CatchUp:
    """Which partitions still have records below the high watermark seen at start."""

    pending: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_watermarks(cls, watermarks: dict[int, tuple[int, int]]) -> CatchUp:
        return cls({p: high for p, (low, high) in watermarks.items() if high > low})

    @property
    def done(self) -> bool:
        return not self.pending

    def read(self, partition: int, offset: int) -> None:
        if offset + 1 >= self.pending.get(partition, 0):
            self.pending.pop(partition, None)

    def at_end(self, partition: int) -> None:
        self.pending.pop(partition, None)


class CompactedReader:
    """Reads ``topic`` from the beginning into ``index``."""

    def __init__(self, bootstrap_servers: str, topic: str, index: RecordIndex) -> None:
        self.topic = topic
        self.index = index
        self.catch_up: CatchUp | None = None
        self._consumer = Consumer(
            {
                **client_config(bootstrap_servers),
                # Never joins or commits: the id is only there because librdkafka wants one.
                "group.id": f"fleetstream-registry-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )

    @property
    def caught_up(self) -> bool:
        return self.catch_up is not None and self.catch_up.done

    def assign(self, timeout_s: float = 5.0) -> None:
        """Note the high watermarks and assign every partition from its beginning.

        Raises :class:`KafkaUnavailable` when the broker or the topic cannot be reached.
        """
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=timeout_s)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                reason = topic.error if topic is not None else "missing"
                raise KafkaUnavailable(f"registry topic {self.topic}: {reason}")
            watermarks = {
                p: self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=timeout_s
                )
                for p in sorted(topic.partitions)
            }
        except KafkaException as exc:
            raise KafkaUnavailable(f"registry topic {self.topic}: {exc}") from exc
        self.catch_up = CatchUp.from_watermarks(watermarks)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in watermarks])

    def assign_retrying(self, stopping: threading.Event, what: str) -> bool:
        """:meth:`assign`, retried with capped backoff until it works (True) or ``stopping``."""
        delay = 0.2
        while not stopping.is_set():
            try:
                self.assign()
            except KafkaUnavailable as exc:
                log.warning("%s waiting for Kafka: %s", what, exc)
                stopping.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
            else:
                return True
        return False

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
                log.warning("registry topic %s: %s", self.topic, error.str())
            return
        self.index.apply(message.key(), message.value())
        if self.catch_up is not None:
            self.catch_up.read(partition, message.offset() or 0)


def read_to_end(bootstrap_servers: str, topic: str, index: Index, timeout_s: float = 30.0) -> Index:
    """Apply ``topic`` as it is now to ``index`` and return it (the registry as the topic holds
    it, for ``resync``); raises KafkaUnavailable after ``timeout_s``."""
    reader = CompactedReader(bootstrap_servers, topic, index)
    deadline = time.monotonic() + timeout_s
    try:
        _assign_until(reader, deadline)
        while not reader.caught_up:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"could not read {topic} to its end in {timeout_s}s")
            reader.poll()
    finally:
        reader.close()
    return index


def _assign_until(reader: CompactedReader, deadline: float) -> None:
    """Assign, retrying briefly: right after a broker restart, partitions answer
    NOT_LEADER_FOR_PARTITION for a moment."""
    while True:
        try:
            reader.assign(max(1.0, deadline - time.monotonic()))
            return
        except KafkaUnavailable:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)  # back off between attempts, not a wait for a condition


class TopicFollower:
    """Follows a registry topic on a daemon thread: ``start()`` once, ``stop()`` once.

    If the broker goes away after the follower caught up, it keeps its contents and keeps
    retrying; it stays caught up, possibly stale, for as long as the outage lasts.
    """

    name = "registry follower"

    def __init__(self, bootstrap_servers: str, topic: str, index: RecordIndex) -> None:
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self._followed = index
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        return await asyncio.to_thread(self._caught_up.wait, timeout_s)

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
            self._thread = None

    def caught_up_message(self) -> str:
        return f"{self.name} caught up with {self.topic}"

    def _run(self) -> None:
        reader = CompactedReader(self._bootstrap, self.topic, self._followed)
        try:
            if reader.assign_retrying(self._stopping, self.name):
                while not self._stopping.is_set():
                    reader.poll()
                    if not self._caught_up.is_set() and reader.caught_up:
                        log.info("%s", self.caught_up_message())
                        self._caught_up.set()
        finally:
            reader.close()


class DocumentCache(TopicFollower, Generic[D]):
    """A process's copy of a registry, following its topic: ``start()`` once, ``stop()`` once."""

    noun = "records"
    """What the caught-up log line counts."""

    def __init__(self, bootstrap_servers: str, topic: str, index: DocumentIndex[D]) -> None:
        self.index = index
        super().__init__(bootstrap_servers, topic, index)

    def get(self, record_id: str) -> D | None:
        return self.index.get(record_id)

    def documents(self) -> dict[str, D]:
        """A copy of every document read so far, by id."""
        return self.index.documents()

    def caught_up_message(self) -> str:
        return f"{self.name} caught up with {self.topic}: {len(self.index)} {self.noun}"

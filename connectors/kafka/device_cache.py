"""An in-memory copy of the device registry that follows ``fleet.devices.v1``.

Every API process keeps one, so authenticating a request is a dict look-up, not a database round
trip, and a change published by any instance (or the CLI) reaches every instance within
milliseconds of the broker's ack.

A daemon thread owns a confluent-kafka ``Consumer`` that is *assigned* every partition from the
beginning: no consumer group, no committed offsets, each process reads the whole compacted topic.
The cache is **caught up** once it has read every partition up to the high watermark it saw when
it started; until then a missing device may just not have been read yet, so callers must answer
"try again" (503), never "unknown device" (401). Partitions added to the topic later are not
followed (adding partitions to a registry topic is not an online operation here).

If the broker goes away after the cache caught up, the cache keeps its contents and keeps
retrying; it stays caught up, possibly stale, for as long as the outage lasts (ingest cannot get
acks then anyway).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

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
from schemas.devices import Device, decode_device, hash_token, token_matches

log = logging.getLogger(__name__)

_POLL_S = 0.1
_RETRY_MAX_S = 5.0


class DeviceIndex:
    """Devices by id and by token hash. Applied from one thread, read from others: each step
    is a single dict operation, atomic under the GIL."""

    def __init__(self) -> None:
        self._devices: dict[str, Device] = {}
        self._owners: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one registry record: a document replaces the device, a tombstone removes it.

        A record that cannot be decoded is logged and skipped: it must not stop the cache.
        """
        if key is None:
            log.error("registry record without a key skipped")
            return
        device_id = key.decode(errors="replace")
        if value is None:
            self._forget(device_id)
            return
        try:
            device = decode_device(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("registry record for %s skipped: %s", device_id, exc)
            return
        if device.device_id != device_id:
            log.error("registry record keyed %s is about %s; skipped", device_id, device.device_id)
            return
        previous = self._devices.get(device_id)
        self._devices[device_id] = device
        self._owners[device.token_hash] = device_id
        if previous is not None and previous.token_hash != device.token_hash:
            self._drop_owner(previous)

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def documents(self) -> dict[str, Device]:
        """A copy of every device, by id."""
        return dict(self._devices)

    def identify(self, token: str) -> Device | None:
        """The device whose token this is (enabled or not), or None."""
        owner = self._owners.get(hash_token(token))
        device = None if owner is None else self._devices.get(owner)
        if device is None or not token_matches(token, device.token_hash):
            return None
        return device

    def _forget(self, device_id: str) -> None:
        previous = self._devices.pop(device_id, None)
        if previous is not None:
            self._drop_owner(previous)

    def _drop_owner(self, device: Device) -> None:
        if self._owners.get(device.token_hash) == device.device_id:
            self._owners.pop(device.token_hash, None)


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


class RegistryReader:
    """Reads the registry topic from the beginning into a :class:`DeviceIndex`."""

    def __init__(self, bootstrap_servers: str, topic: str, index: DeviceIndex) -> None:
        self.topic = topic
        self.index = index
        self.catch_up: CatchUp | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                # Never joins or commits: the id is only there because librdkafka wants one.
                "group.id": f"fleetstream-device-cache-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )

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


def read_registry(bootstrap_servers: str, topic: str, timeout_s: float = 30.0) -> DeviceIndex:
    """The registry as the topic holds it now (used by ``devices resync``)."""
    index = DeviceIndex()
    reader = RegistryReader(bootstrap_servers, topic, index)
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


class DeviceCache:
    """The registry cache of one API process: ``start()`` once, ``stop()`` once."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self.topic = topic
        self._index = DeviceIndex()
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def get(self, device_id: str) -> Device | None:
        return self._index.get(device_id)

    def documents(self) -> dict[str, Device]:
        """A copy of every device read so far, by id (the operator views list them)."""
        return self._index.documents()

    def identify(self, token: str) -> Device | None:
        return self._index.identify(token)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="device-cache", daemon=True)
        self._thread.start()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        return await asyncio.to_thread(self._caught_up.wait, timeout_s)

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
            self._thread = None

    def _run(self) -> None:
        reader = RegistryReader(self._bootstrap, self.topic, self._index)
        try:
            if self._assign(reader):
                self._follow(reader)
        finally:
            reader.close()

    def _assign(self, reader: RegistryReader) -> bool:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                reader.assign()
            except KafkaUnavailable as exc:
                log.warning("device cache waiting for Kafka: %s", exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
            else:
                return True
        return False

    def _follow(self, reader: RegistryReader) -> None:
        while not self._stopping.is_set():
            reader.poll()
            if not self._caught_up.is_set() and reader.catch_up and reader.catch_up.done:
                log.info("device cache caught up with %s: %d devices", self.topic, len(self._index))
                self._caught_up.set()

"""The live feed behind ``GET /ws``: processed readings (and device status) to WebSocket clients.

Source: a Kafka consumer in the API process on the internal ``fleet.curated.v1`` (curated
envelopes, JSON, written by the validate agent once a reading passed validation), *assigned*
every partition from its end: no consumer group, no commits, every API instance sees every
reading from the moment it starts (a live view, not a replay). It follows the device-status
topic (``FLEET_TOPICS__DEVICE_STATUS``: the status agent's :class:`schemas.status.StatusChange`
transitions, JSON) the same way, once that topic exists, and relays each record as it is, as
``{"type": "device-status", "data": <transition>}``. See decision 13 for why Kafka and not Redis
pub/sub.

Fan-out never waits on a client: the consumer thread hands each poll's records to the event
loop, where one task fans them out a record (an envelope) at a time, yielding in between so the
clients' sender tasks can write. Each matching message is encoded once and queued for every
matching client without waiting.

Each client's queue is bounded (:class:`QueueLimits`, ``FLEET_LIVE__CLIENT_QUEUE_MAX`` messages
and ``FLEET_LIVE__CLIENT_QUEUE_MAX_CHARS`` characters of JSON): a client that still has that much
waiting when the next record comes, or when one of its own messages needs an answer, is behind.
It is marked overflowed, its queue is emptied at once (the memory goes back before the close
handshake, which a stalled client may never finish) and its own task closes it with code 4008;
nobody else, and nothing upstream, slows down. The bound is checked per record, not per message:
a record carries a whole envelope at once (at most ``FLEET_KAFKA__ENVELOPE_MAX_BYTES``), which
a healthy client drains between two. So a client holds at most the limits plus one record, or
plus one answer to its own message (at most the server's WebSocket message size).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from connectors.kafka.security import client_config
from schemas.contract_wire import decode_status
from schemas.envelopes import decode_curated_items
from schemas.errors import ValidationFailure

log = logging.getLogger(__name__)

POLL_S = 0.2
POLL_MAX = 500
STATUS_RECHECK_S = 10.0


class _Summary(msgspec.Struct):
    """What filtering needs of a curated reading."""

    device_id: str = ""
    sensors: dict[str, msgspec.Raw] = {}


_summary = msgspec.json.Decoder(_Summary)

Record = tuple[str, bytes | None, bytes | None]
"""(topic, key, value) of a consumed record."""

Reshape = Callable[[msgspec.Raw], bytes]
"""A curated reading's JSON as a client's protocol shapes it (seed 002's port: its
``EnrichedSensorReading``); raises ``msgspec.DecodeError`` for an item it cannot read."""


@dataclass(frozen=True)
class QueueLimits:
    """How much may wait for one client before it counts as behind."""

    messages: int
    chars: int
    """Characters of the queued JSON texts (one byte each when ASCII, the usual case)."""


@dataclass(eq=False)
class Subscriber:
    """One client: its filters (None = all) and its bounded queue of encoded messages."""

    limits: QueueLimits
    device: str | None = None
    """A device token's client sees this device only, whatever it subscribes to."""
    reshape: Reshape | None = None
    """How this client's ``sensor-data`` carries a reading (None: the curated reading)."""
    device_ids: frozenset[str] | None = None
    sensor_types: frozenset[str] | None = None
    active: bool = False
    """False until the first subscribe message: nothing is sent before."""
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    behind: tuple[int, int] = (0, 0)
    """Messages and characters that were waiting when the client was found behind."""
    _queue: deque[str] = field(default_factory=deque, init=False)
    _chars: int = field(default=0, init=False)
    _ready: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    @property
    def waiting(self) -> tuple[int, int]:
        """Messages and characters queued now."""
        return len(self._queue), self._chars

    def wants(self, device_id: str, sensor_types: Iterable[str] | None) -> bool:
        if not self.active or self.overflowed.is_set():
            return False
        if self.device is not None and device_id != self.device:
            return False
        if self.device_ids is not None and device_id not in self.device_ids:
            return False
        if self.sensor_types is None or sensor_types is None:
            return True
        return not self.sensor_types.isdisjoint(sensor_types)

    def keeping_up(self) -> bool:
        """False (and overflowed from now on, the queue emptied) when the limits are reached."""
        if self.overflowed.is_set():
            return False
        if len(self._queue) < self.limits.messages and self._chars < self.limits.chars:
            return True
        self.behind = self.waiting
        self.overflowed.set()
        self._queue.clear()
        self._chars = 0
        return False

    def offer(self, message: str) -> None:
        """Queue a message of the feed; the caller checked :meth:`keeping_up` for its record."""
        if self.overflowed.is_set():
            return
        self._queue.append(message)
        self._chars += len(message)
        self._ready.set()

    def answer(self, message: str) -> None:
        """Queue the answer to the client's own message, if the client is keeping up."""
        if self.keeping_up():
            self.offer(message)

    async def next_message(self) -> str:
        """The oldest queued message, once there is one."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        message = self._queue.popleft()
        self._chars -= len(message)
        return message


def sensor_data(item: msgspec.Raw, reshape: Reshape | None) -> str | None:
    """The ``sensor-data`` message of one curated reading; None when ``reshape`` cannot read
    it (logged, skipped)."""
    if reshape is None:
        return '{"type":"sensor-data","data":' + bytes(item).decode() + "}"
    try:
        data = reshape(item)
    except msgspec.DecodeError as exc:
        log.warning("live feed skipped a reading it could not reshape: %s", exc)
        return None
    return '{"type":"sensor-data","data":' + data.decode() + "}"


class LiveFeed:
    """``start()`` once in the lifespan, ``stop()`` once; ``add``/``remove`` per client."""

    def __init__(self, bootstrap_servers: str, curated_topic: str, status_topic: str) -> None:
        self._bootstrap = bootstrap_servers
        self._curated = curated_topic
        self._status = status_topic
        self._subscribers: set[Subscriber] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[Record] = deque()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.assigned = threading.Event()
        """Set once the curated topic is assigned: readings processed from then on are fed."""

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._dispatcher = self._loop.create_task(self._dispatch_forever())
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
            self._thread = None

    # -- event loop side ----------------------------------------------------------------------

    def _arrived(self, records: list[Record]) -> None:
        if self._subscribers:
            self._pending.extend(records)
            self._wake.set()

    async def _dispatch_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                self.dispatch(self._pending.popleft())
                await asyncio.sleep(0)  # let the clients' senders write before the next record

    def dispatch(self, record: Record) -> None:
        """Fan one ``(topic, key, value)`` record out to the clients that want it."""
        topic, key, value = record
        if topic == self._curated:
            self._readings(value)
        elif value is not None:
            self._status_record(key, value)

    def _readings(self, value: bytes | None) -> None:
        try:
            items = decode_curated_items(value)
        except ValidationFailure as exc:
            log.warning("live feed skipped a curated record: %s", exc.reason)
            return
        subscribers = [s for s in self._subscribers if s.keeping_up()]
        for item in items:
            try:
                summary = _summary.decode(item)
            except msgspec.DecodeError:
                continue
            types = summary.sensors.keys()
            wanted = [s for s in subscribers if s.wants(summary.device_id, types)]
            messages: dict[Reshape | None, str | None] = {}  # each shape encoded once
            for subscriber in wanted:
                shape = subscriber.reshape
                if shape not in messages:
                    messages[shape] = sensor_data(item, shape)
                message = messages[shape]
                if message is not None:
                    subscriber.offer(message)

    def _status_record(self, key: bytes | None, value: bytes) -> None:
        try:  # the topic's values are Avro or JSON; clients get the JSON contract
            change = decode_status(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return
        text = msgspec.json.encode(change).decode()
        device_id = change.device_id or (key or b"").decode(errors="replace")
        message = '{"type":"device-status","data":' + text + "}"
        for subscriber in list(self._subscribers):
            if subscriber.keeping_up() and subscriber.wants(device_id, None):
                subscriber.offer(message)

    # -- consumer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        consumer = Consumer(
            {
                **client_config(self._bootstrap),
                "group.id": f"fleetstream-live-{uuid.uuid4()}",  # never joins: assigned only
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        try:
            self._follow(consumer)
        finally:
            consumer.close()

    def _follow(self, consumer: Consumer) -> None:
        assigned: set[str] = set()
        next_check = 0.0
        while not self._stopping.is_set():
            if len(assigned) < 2 and time.monotonic() >= next_check:
                assigned |= self._assign(consumer, assigned)
                next_check = time.monotonic() + (1.0 if not assigned else STATUS_RECHECK_S)
            if not assigned:
                self._stopping.wait(0.5)
                continue
            messages = consumer.consume(POLL_MAX, POLL_S)
            records = [(m.topic() or "", m.key(), m.value()) for m in messages if m.error() is None]
            if records and self._loop is not None:
                self._loop.call_soon_threadsafe(self._arrived, records)

    def _assign(self, consumer: Consumer, assigned: set[str]) -> set[str]:
        """Topics that exist now, added to the assignment at their ends."""
        added: set[str] = set()
        partitions: list[TopicPartition] = []
        for topic in (self._curated, self._status):
            if topic in assigned:
                continue
            try:
                described = consumer.list_topics(topic, timeout=5).topics.get(topic)
            except KafkaException as exc:
                log.warning("live feed waiting for Kafka: %s", exc)
                return added
            if described is None or described.error is not None or not described.partitions:
                continue
            try:  # explicit ends: "assigned" then means every later record is fed
                partitions += [
                    TopicPartition(topic, p, self._end(consumer, topic, p))
                    for p in described.partitions
                ]
            except KafkaException as exc:
                log.warning("live feed waiting for Kafka: %s", exc)
                return added
            added.add(topic)
        if partitions:
            consumer.incremental_assign(partitions)
            log.info("live feed follows %s", ", ".join(sorted(added)))
        if self._curated in added:
            self.assigned.set()
        return added

    @staticmethod
    def _end(consumer: Consumer, topic: str, partition: int) -> int:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
        return int(high) if high >= 0 else OFFSET_END

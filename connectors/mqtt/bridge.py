"""The MQTT bridge: device messages from Mosquitto into ``fleet.raw.v1`` envelopes.

Delivery contract: a message is PUBACKed to the broker only after Kafka acked (``acks=all``) the
envelope that holds its readings, or its dead letter. Everything else follows from MQTT 5 and the
broker keeping our session:

* **Persistent session.** A fixed client id, ``clean_start=False`` and a session expiry from the
  settings: while the bridge is stopped (or killed) the broker queues what devices publish, and
  on reconnect it sends that, plus every message we had not PUBACKed yet (at-least-once; ids
  from timestamped readings are deterministic, so such repeats are stored once).
* **Backpressure.** Our receive-maximum caps how many unacked messages the broker sends ahead.
  When Kafka is down, chunks are retried with capped backoff and not acked; the broker stops
  sending once that many are in flight and queues the rest. Memory stays bounded, nothing is
  lost, and the bridge resumes when Kafka is back.
* **Shared subscriptions.** ``$share/<group>/<pattern>``: several bridges split the messages.

Threads: paho's network thread only appends each message to a deque and wakes the event loop
(once per burst, not per message). The loop takes everything waiting as one *chunk*, validates
it, hands its items to the shared :class:`EnvelopeBatcher` in one call (the same group commit as
the HTTP edge) and its dead letters to the producer, and acks the chunk's messages in arrival
order once that is done. Up to ``MAX_CHUNKS_IN_FLIGHT`` chunks overlap.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.kafka.errors import KafkaRefused, KafkaUnavailable, ProducerBackpressure
from connectors.kafka.producer import Record
from connectors.mqtt.errors import BrokerUnavailable
from connectors.mqtt.messages import Item, TopicMatcher, dead_letter_record, decode_message
from schemas.errors import ValidationFailure
from schemas.settings import Settings

log = logging.getLogger(__name__)

CHUNK_MAX = 5000
MAX_CHUNKS_IN_FLIGHT = 8
RETRY_FIRST_S = 0.2
CONNECT_TIMEOUT_S = 10.0


_PUBACK = struct.Struct("!BBH")


def puback_packets(mids: Sequence[int]) -> bytes:
    """PUBACKs (success) of ``mids``, back to back, as paho's ``ack(mid, 1)`` encodes each: MQTT
    5 lets a success PUBACK without properties leave out its reason code (remaining length 2)."""
    pack = _PUBACK.pack
    return b"".join([pack(PUBACK, 2, mid) for mid in mids])


class Batcher(Protocol):
    async def submit(self, items: Sequence[tuple[str, bytes]]) -> None: ...


class Producer(Protocol):
    async def produce_all(self, topic: str, records: Sequence[Record]) -> None: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int
    """Which connection delivered it: an ack is only valid on that one."""


@dataclass
class _Chunk:
    messages: list[Inbound]
    done: asyncio.Task[None]


class MqttBridge:
    """One bridge instance; :meth:`run` until ``stop`` is set."""

    def __init__(
        self, settings: Settings, batcher: Batcher, producer: Producer, *, retry_max_s: float
    ) -> None:
        self._settings = settings
        self._mqtt = settings.mqtt
        self._batcher = batcher
        self._producer = producer
        self._retry_max_s = retry_max_s
        self._matcher = TopicMatcher(self._mqtt.topic_patterns)
        self._limits = settings.generic.limits()
        self._inbox: deque[Inbound] = deque()
        self._signalled = False
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session = 0
        self._connected = threading.Event()
        self._fatal: str | None = None
        self.acked = 0
        self.dead_letters = 0
        self._client = self._make_client()

    # -- paho side (its network thread) -------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._mqtt.client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(
            self._mqtt.bridge_username, self._mqtt.bridge_password.get_secret_value()
        )
        client.manual_ack_set(True)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the bridge: %s", reason)
            if not self._connected.is_set():
                self._fatal = f"the broker refused {self._mqtt.bridge_username}: {reason}"
                self._connected.set()
            return
        self._session += 1
        log.info(
            "connected to MQTT as %s (session present: %s)",
            self._mqtt.client_id,
            flags.session_present,
        )
        group = self._mqtt.share_group
        client.subscribe(
            [(f"$share/{group}/{p}", SubscribeOptions(qos=1)) for p in self._mqtt.topic_patterns]
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _m: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused and not self._connected.is_set():
            self._fatal = f"subscriptions refused: {', '.join(refused)}"
        elif refused:
            log.error("MQTT subscriptions refused: %s", ", ".join(refused))
        else:
            log.info("subscribed to %s as $share/%s", self._mqtt.topics, self._mqtt.share_group)
        self._connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        log.warning("MQTT connection lost (%s); unacked messages will be redelivered", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.append(
            Inbound(message.topic, bytes(message.payload), message.mid, message.qos, self._session)
        )
        if not self._signalled and self._loop is not None:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._wakeup.set)

    # -- event loop side ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, drain_timeout_s: float = 10.0) -> None:
        """Connect, then bridge until ``stop``; raises BrokerUnavailable if the first connect
        fails. On stop, chunks in flight get ``drain_timeout_s`` to finish and be acked."""
        self._loop = asyncio.get_running_loop()
        await self._connect()
        in_flight: asyncio.Queue[_Chunk | None] = asyncio.Queue(MAX_CHUNKS_IN_FLIGHT)
        acker = asyncio.create_task(self._ack_in_order(in_flight))
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                woken = asyncio.create_task(self._wakeup.wait())
                await asyncio.wait({woken, stopping}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if stop.is_set():
                    break
                self._wakeup.clear()
                self._signalled = False
                while self._inbox:
                    chunk = self._take()
                    await in_flight.put(_Chunk(chunk, asyncio.create_task(self._deliver(chunk))))
        finally:
            stopping.cancel()
            await in_flight.put(None)
            try:
                await asyncio.wait_for(acker, drain_timeout_s)
            except TimeoutError:
                log.warning("stopped with unacked messages; the broker redelivers them")
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)

    async def _connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._mqtt.session_expiry_s
        properties.ReceiveMaximum = self._mqtt.receive_maximum
        try:
            self._client.connect(
                self._mqtt.host,
                self._mqtt.port,
                keepalive=self._mqtt.keepalive_s,
                clean_start=False,
                properties=properties,
            )
        except OSError as exc:
            raise BrokerUnavailable(
                f"MQTT broker {self._mqtt.host}:{self._mqtt.port}: {exc}"
            ) from exc
        self._client.loop_start()
        ready = await asyncio.to_thread(self._connected.wait, CONNECT_TIMEOUT_S)
        if not ready or self._fatal is not None:
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)
            raise BrokerUnavailable(self._fatal or "the MQTT broker did not answer the bridge")

    def _take(self) -> list[Inbound]:
        chunk: list[Inbound] = []
        inbox = self._inbox
        while inbox and len(chunk) < CHUNK_MAX:
            chunk.append(inbox.popleft())
        return chunk

    async def _ack_in_order(self, in_flight: asyncio.Queue[_Chunk | None]) -> None:
        while (chunk := await in_flight.get()) is not None:
            await chunk.done  # retries until Kafka took it; never raises but for cancellation
            session = self._session
            mids = [m.mid for m in chunk.messages if m.session == session and m.qos == 1]
            if mids:
                # One write for the chunk: paho's ack() queues a packet and wakes its network
                # thread per message (a syscall and a thread switch each, ~a third of the
                # bridge's CPU per message). The bytes are those ack() would send.
                self._client._packet_queue(PUBACK, puback_packets(mids), 0, 1)
            self.acked += len(chunk.messages)

    async def _deliver(self, chunk: list[Inbound]) -> None:
        items, letters = self._prepare(chunk)
        self.dead_letters += len(letters)
        delay = RETRY_FIRST_S
        while True:
            try:
                await self._send(items, letters)
                return
            except KafkaRefused:
                await self._one_by_one(chunk)
                return
            except (KafkaUnavailable, ProducerBackpressure) as exc:
                log.warning(
                    "Kafka did not take %d messages (%s); retrying in %.1fs", len(chunk), exc, delay
                )
            except Exception:  # never ack, never lose: log, wait, try again
                log.exception("delivering %d MQTT messages failed; retrying", len(chunk))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    async def _send(self, items: list[Item], letters: list[Record]) -> None:
        sends: list[Awaitable[None]] = []
        if items:
            sends.append(self._batcher.submit(items))
        if letters:
            sends.append(self._producer.produce_all(self._settings.topics.deadletter, letters))
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _one_by_one(self, chunk: list[Inbound]) -> None:
        """Kafka refused an envelope for what it is: find the message, dead-letter it."""
        for message in chunk:
            items, letters = self._prepare([message])
            try:
                await self._send(items, letters)
            except KafkaRefused as exc:
                now = datetime.now(UTC)
                letter = dead_letter_record(
                    message.topic, message.payload, exc, now, self._matcher.device_id(message.topic)
                )
                await self._send([], [letter])

    def _prepare(self, chunk: list[Inbound]) -> tuple[list[Item], list[Record]]:
        received_at = datetime.now(UTC)
        items: list[Item] = []
        letters: list[Record] = []
        mqtt_settings = self._mqtt
        for message in chunk:
            try:
                decoded = decode_message(
                    message.topic,
                    message.payload,
                    matcher=self._matcher,
                    received_at=received_at,
                    max_items=mqtt_settings.max_batch_items,
                    max_bytes=mqtt_settings.max_payload_bytes,
                    limits=self._limits,
                )
            except ValidationFailure as exc:
                device_id = self._matcher.device_id(message.topic)
                letters.append(
                    dead_letter_record(message.topic, message.payload, exc, received_at, device_id)
                )
            else:
                items.extend(decoded.items)
        return items, letters

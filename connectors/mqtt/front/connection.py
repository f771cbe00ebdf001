"""One device's MQTT connection to the front: CONNECT, then PUBLISH until it leaves.

QoS 1 publishes are taken concurrently (at most ``receive_maximum`` in flight) and PUBACKed in
the order they came, each only after Kafka acked it (``Ingest.publish``); the specification
asks for that order. When Kafka does not take a reading, an MQTT 5 client gets PUBACK 0x80 and
an MQTT 3.1.1 client, which has no negative PUBACK, is disconnected without one, so it sends
the message again when it reconnects. QoS 2 is refused. Subscriptions are refused per filter:
devices publish here, they read elsewhere. A client that stays silent past 1.5 keep-alive
periods, or whose device is disabled, rotated or deleted, is disconnected; a peer that has not
sent a whole CONNECT within ``CONNECT_TIMEOUT_S`` is closed. A CONNECT of an MQTT level the
front does not serve gets CONNACK 0x01 (3.1.1's form) before the close; any other malformed
packet closes the connection (MQTT 5: after a DISCONNECT naming the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from connectors.mqtt.front import packets
from connectors.mqtt.front.ingest import UNSPECIFIED, Admitted, Ingest, KafkaTrouble
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.front.packets import PacketType, ProtocolError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
CONNECT_MAX_BYTES = 64 * 1024
"""The largest packet read before a client has said who it is: a stranger cannot make the front
hold a megabyte per connection (a device's CONNECT is well under a kilobyte)."""
QOS_NOT_SUPPORTED = 0x9B
SESSION_TAKEN_OVER = 0x8E
KEEP_ALIVE_TIMEOUT = 0x8D


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ingest: Ingest,
        *,
        metrics: FrontMetrics,
        clock: Callable[[], datetime],
        max_packet_bytes: int,
        receive_maximum: int,
    ) -> None:
        self.reader, self.writer, self.ingest = reader, writer, ingest
        self.metrics, self.clock = metrics, clock
        self.max_packet_bytes = max_packet_bytes
        self.protocol = packets.MQTT_311
        self.admitted: Admitted | None = None
        self._acks: asyncio.Queue[tuple[int, asyncio.Future[int]] | None] = asyncio.Queue(
            receive_maximum
        )
        self._closing = False
        self._read_since: float | None = None
        """When the read of the next packet began (None while a packet is handled)."""
        self._watchdog: asyncio.TimerHandle | None = None

    async def serve(self, sessions: dict[str, Connection]) -> None:
        """Until the client leaves, breaks the protocol, or is disconnected."""
        acker: asyncio.Task[None] | None = None
        try:
            if not await self._handshake(sessions):
                return
            acker = asyncio.create_task(self._ack_in_order())
            await self._packets()
        except ProtocolError as exc:
            log.info("mqtt %s: %s", self._who(), exc)
            self.metrics.refused(f"protocol:{exc.reason:#x}")
            self._disconnect(exc.reason)
        except KafkaTrouble as exc:
            log.warning(
                "mqtt %s: Kafka did not take a reading (%s); disconnecting", self._who(), exc
            )
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            await self._close(acker, sessions)

    async def leave(self, reason: int, within_s: float) -> None:
        """Stop taking publishes, PUBACK those in flight as Kafka takes them (at most
        ``within_s``), then disconnect: the server is stopping."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._acks.join(), within_s)
        self.kick(reason)

    def kick(self, reason: int) -> None:
        """Disconnect from outside (a newer connection of the same client, a device disabled)."""
        self._disconnect(reason)
        self.writer.close()

    async def _handshake(self, sessions: dict[str, Connection]) -> bool:
        try:
            read = self._read(min(CONNECT_MAX_BYTES, self.max_packet_bytes))
            kind, _, body = await asyncio.wait_for(read, CONNECT_TIMEOUT_S)
        except TimeoutError:  # a peer that holds a socket without saying who it is
            self.metrics.refused("connect-timeout")
            return False
        if kind != PacketType.CONNECT:
            raise ProtocolError("the first packet is not CONNECT", reason=0x82)
        try:
            connect = packets.parse_connect(body)
        except packets.UnsupportedLevel as exc:
            self._refuse(exc.reason, f"{exc}")
            return False
        self.protocol = connect.protocol
        outcome = self.ingest.admit(
            connect, peer=_peer_host(self.writer), certified=certificate_name(self.writer)
        )
        if isinstance(outcome, int):
            self._refuse(outcome, f"user {connect.username!r} client {connect.client_id!r}")
            return False
        previous = sessions.get(outcome.client_id)
        if previous is not None:
            previous.kick(SESSION_TAKEN_OVER)
        sessions[outcome.client_id] = self
        self.admitted = outcome
        self.keepalive_s = connect.keepalive_s
        self.writer.write(
            packets.connack(self.protocol, 0, properties=self._connack_props(connect))
        )
        self.metrics.connected(+1)
        return True

    def _refuse(self, reason: int, why: str) -> None:
        """Answer a CONNECT with a refusing CONNACK (the connection then closes)."""
        self.metrics.refused(f"connect:{reason:#x}")
        log.info("mqtt connect refused (%#x): %s", reason, why)
        self.writer.write(packets.connack(self.protocol, reason))

    def _connack_props(self, connect: packets.Connect) -> bytes:
        if self.protocol != packets.MQTT_5 or self.admitted is None:
            return b""
        props = (
            packets.property_bytes(0x21, self._acks.maxsize, 2)  # receive maximum
            + packets.property_bytes(0x24, 1, 1)  # maximum QoS 1
            + packets.property_bytes(0x25, 0, 1)  # no retained messages
            + packets.property_bytes(0x28, 0, 1)  # no wildcard subscriptions
            + packets.property_bytes(0x2A, 0, 1)  # no shared subscriptions
            + packets.property_bytes(0x27, self.max_packet_bytes, 4)  # maximum packet size
        )
        if not connect.client_id:
            props += packets.property_bytes(0x12, self.admitted.client_id)
        return props

    async def _packets(self) -> None:
        limit = self.keepalive_s * 1.5 if self.keepalive_s else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as idle:
                if limit:
                    self._watchdog = loop.call_later(limit, self._watch_idle, idle, limit)
                try:
                    while not self._closing:
                        self._read_since = loop.time()
                        kind, flags, body = await self._read()
                        self._read_since = None
                        if not await self._handle(kind, flags, body):
                            return
                finally:
                    if self._watchdog is not None:
                        self._watchdog.cancel()
        except TimeoutError:
            if not idle.expired():
                raise
            self._disconnect(KEEP_ALIVE_TIMEOUT)

    def _watch_idle(self, idle: asyncio.Timeout, limit: float) -> None:
        """The keep-alive check: one timer a keep-alive period, not one a packet. A client
        silent for ``limit`` seconds of waiting for its next packet times out (time spent
        waiting for Kafka to make room does not count)."""
        loop = asyncio.get_running_loop()
        since = self._read_since
        if since is not None and loop.time() - since >= limit:
            idle.reschedule(loop.time())  # ends the read with TimeoutError
            return
        next_check = (since if since is not None else loop.time()) + limit
        self._watchdog = loop.call_at(next_check, self._watch_idle, idle, limit)

    async def _handle(self, kind: int, flags: int, body: bytes) -> bool:
        """One packet; False when the client left."""
        if kind == PacketType.PUBLISH:
            await self._publish(packets.parse_publish(flags, body, self.protocol))
        elif kind == PacketType.PINGREQ:
            self.writer.write(packets.PINGRESP)
        elif kind == PacketType.SUBSCRIBE:
            sub = packets.parse_subscribe(body, self.protocol)
            self.writer.write(packets.suback(self.protocol, sub.packet_id, len(sub.filters)))
        elif kind == PacketType.UNSUBSCRIBE:
            sub = packets.parse_subscribe(body, self.protocol, unsubscribe=True)
            self.writer.write(packets.unsuback(self.protocol, sub.packet_id, len(sub.filters)))
        elif kind == PacketType.DISCONNECT:
            return False
        else:
            raise ProtocolError(f"packet type {kind} is not served here", reason=0x82)
        return True

    async def _publish(self, publish: packets.Publish) -> None:
        admitted = self.admitted
        assert admitted is not None  # noqa: S101 - _packets runs only after the handshake
        if publish.qos == 2:
            raise ProtocolError("QoS 2 is not served (QoS 0 and 1 are)", QOS_NOT_SUPPORTED)
        if publish.topic_alias is not None:
            raise ProtocolError("topic aliases are not served", reason=0x94)
        if not self.ingest.still_allowed(admitted.device):
            raise ProtocolError("the device is disabled, rotated or deleted", reason=0x87)
        started = time.perf_counter()
        taking = asyncio.ensure_future(
            self.ingest.publish(admitted.device, publish.topic, publish.payload, self.clock())
        )
        if publish.packet_id is None:  # QoS 0: nothing to answer
            taking.add_done_callback(self._qos0_done)
            return
        taking.add_done_callback(lambda done: self.metrics.taken(done, started))
        await self._acks.put((publish.packet_id, taking))

    def _qos0_done(self, done: asyncio.Future[int]) -> None:
        self.metrics.taken(done, None)

    async def _ack_in_order(self) -> None:
        """PUBACK each publish, in order, once Kafka took it. The PUBACKs that are ready
        together go out in one write (a send a PUBACK was a system call a message)."""
        ready: list[bytes] = []
        while True:
            try:
                entry = self._acks.get_nowait()
            except asyncio.QueueEmpty:
                self._write_acks(ready)
                entry = await self._acks.get()
            if entry is None:
                self._write_acks(ready)
                return
            packet_id, taking = entry
            if not taking.done():
                self._write_acks(ready)  # what is ready goes out before waiting for more
            try:
                reason = await taking
            except KafkaTrouble:
                if self.protocol != packets.MQTT_5:  # no negative PUBACK: make it resend
                    self._write_acks(ready)
                    self.writer.close()
                    return
                reason = UNSPECIFIED
            ready.append(packets.puback(self.protocol, packet_id, reason))

    def _write_acks(self, ready: list[bytes]) -> None:
        """Write the PUBACKs of ``ready`` and mark them done (``leave`` waits for that)."""
        if ready:
            self.writer.write(b"".join(ready))
            for _ in ready:
                self._acks.task_done()
            ready.clear()

    async def _read(self, limit: int | None = None) -> tuple[int, int, bytes]:
        """One packet: type, flags, body; ``limit`` bounds its size (the connection's own
        maximum by default)."""
        limit = self.max_packet_bytes if limit is None else limit
        first, byte = await self.reader.readexactly(2)  # most packets say their length in a byte
        length, shift = byte & 0x7F, 7
        for _ in range(3):
            if not byte & 0x80:
                break
            byte = (await self.reader.readexactly(1))[0]
            length += (byte & 0x7F) << shift
            shift += 7
        else:
            if byte & 0x80:
                raise ProtocolError("remaining length longer than 4 bytes")
        packets.check_flags(first >> 4, first & 0x0F)
        if length > limit:
            raise ProtocolError(f"packet of {length} bytes; at most {limit}", 0x95)
        return first >> 4, first & 0x0F, await self.reader.readexactly(length)

    def _disconnect(self, reason: int) -> None:
        self._closing = True
        if self.protocol == packets.MQTT_5 and not self.writer.is_closing():
            self.writer.write(packets.disconnect(reason))

    async def _close(
        self, acker: asyncio.Task[None] | None, sessions: dict[str, Connection]
    ) -> None:
        if acker is not None:
            # PUBACK what Kafka takes of what is in flight. The end mark waits for room when
            # the queue is full (put_nowait would drop it, and the acker would wait out the
            # whole timeout for a mark that never comes).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await self._acks.put(None)
                    await acker
            acker.cancel()
        if self.admitted is not None:
            if sessions.get(self.admitted.client_id) is self:
                del sessions[self.admitted.client_id]
            self.metrics.connected(-1)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    def _who(self) -> str:
        return self.admitted.client_id if self.admitted else "(not connected)"


def _peer_host(writer: asyncio.StreamWriter) -> str | None:
    """The TCP peer's address (anonymous publishers are admitted by it)."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def certificate_name(writer: asyncio.StreamWriter) -> str | None:
    """The CN of the client certificate the TLS handshake verified (None: none shown, or a
    plain connection). Only a certificate of the configured device CA gets this far."""
    peer = writer.get_extra_info("peercert")
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None

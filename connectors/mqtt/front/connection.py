"""One device's MQTT connection to the front: CONNECT, then PUBLISH until it leaves.

The read loop takes each PUBLISH as it comes (``Ingest.take``: decoded, checked and placed in
an envelope at once, no task a message) and queues what Kafka must ack before the PUBACK; one
acker per connection writes the PUBACKs in the order the publishes came, each only after Kafka
acked its reading (the specification asks for that order), those ready together in one write.
At most ``receive_maximum`` QoS 1 publishes wait for their PUBACK: the next one waits for
room, and reading stops meanwhile. When Kafka does not take a reading, an MQTT 5 client gets
PUBACK 0x80 and an MQTT 3.1.1 client, which has no negative PUBACK, is disconnected without
one, so it sends the message again when it reconnects. QoS 2 is refused. Subscriptions are
refused per filter: devices publish here, they read elsewhere. A client that stays silent past
1.5 keep-alive periods, or whose device is disabled, rotated or deleted, is disconnected; a peer
that has not sent a whole CONNECT within ``CONNECT_TIMEOUT_S`` is closed. A CONNECT of an MQTT
level the front does not serve gets CONNACK 0x01 (3.1.1's form) before the close; any other
malformed packet closes the connection (MQTT 5: after a DISCONNECT naming the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from functools import partial

from connectors.mqtt.front import packets
from connectors.mqtt.front.ingest import SUCCESS, UNSPECIFIED, Admitted, Ingest, not_taken
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
READ_BYTES = 64 * 1024
"""What one read asks of the socket: every whole packet it brings is handled before the next."""

Pending = tuple[int, int, asyncio.Future[None] | None, float]
"""A QoS 1 publish waiting for its PUBACK: packet id, reason once taken, what Kafka must ack
first (None: nothing), when it was read (``time.perf_counter``)."""


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
        self.receive_maximum = receive_maximum
        self._pending: deque[Pending] = deque()
        self._wake: asyncio.Future[None] | None = None
        """Set when the acker waits for a publish to be queued (or for the end)."""
        self._room: asyncio.Future[None] | None = None
        """Set when the read loop waits for PUBACKs to be written (receive maximum reached)."""
        self._drained: asyncio.Future[None] | None = None
        """Set when ``leave`` waits for every PUBACK to be written."""
        self._ended = False
        """No more publishes will be queued: the acker returns once the queue is empty."""
        self._closing = False
        self._read_since: float | None = None
        """When the read of the next packet began (None while a packet is handled)."""
        self._watchdog: asyncio.TimerHandle | None = None
        self._topic_raw: bytes | None = None
        self._topic = ""

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
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            await self._close(acker, sessions)

    async def leave(self, reason: int, within_s: float) -> None:
        """Stop taking publishes, PUBACK those in flight as Kafka takes them (at most
        ``within_s``), then disconnect: the server is stopping."""
        self._closing = True
        if self._pending:
            self._drained = drained = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained, within_s)
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
            packets.property_bytes(0x21, self.receive_maximum, 2)  # receive maximum
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
                    await self._read_loop(loop)
                finally:
                    if self._watchdog is not None:
                        self._watchdog.cancel()
        except TimeoutError:
            if not idle.expired():
                raise
            self._disconnect(KEEP_ALIVE_TIMEOUT)

    async def _read_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read what the socket has, handle every whole packet in it, read again; until the
        client leaves or the connection closes."""
        buffer = b""
        since = loop.time()  # when the wait for the next packet began
        read = self.reader.read
        while not self._closing:
            self._read_since = since
            chunk = await read(READ_BYTES)
            self._read_since = None
            if not chunk:
                return  # the client went away (mid-packet or not)
            buffer = buffer + chunk if buffer else chunk
            used = await self._handle_all(buffer, loop)
            if used < 0:
                return
            if used:
                since = loop.time()
                buffer = buffer[used:]

    async def _handle_all(self, buffer: bytes, loop: asyncio.AbstractEventLoop) -> int:
        """Handle the whole packets at the start of ``buffer``: the bytes they took (-1: the
        client left, or the connection is closing)."""
        at, size = 0, len(buffer)
        while size - at >= 2:
            start, end = self._bounds(buffer, at)
            if start < 0 or end > size:
                break  # the rest of this packet is still on its way
            kind, body = buffer[at] >> 4, buffer[start:end]
            if kind == PacketType.PUBLISH:
                if len(self._pending) >= self.receive_maximum:
                    await self._wait_for_room(loop)
                    if self._closing:
                        return -1
                self._publish(buffer[at] & 0x0F, body)
            elif not self._handle(kind, body):
                return -1
            at = end
            if self._closing:
                return -1
        return at

    def _bounds(self, buffer: bytes, at: int) -> tuple[int, int]:
        """Where the body of the packet at ``at`` starts and ends (start -1: its header is not
        all in yet). Its flags and size are checked as soon as the header is in: a packet over
        the maximum is refused before its body is waited for."""
        first, byte = buffer[at], buffer[at + 1]
        length, start = byte & 0x7F, at + 2
        if byte & 0x80:  # a longer remaining length (up to 4 bytes)
            if at + 2 < len(buffer) and not buffer[at + 2] & 0x80:  # two bytes, most often
                length, start = length | buffer[at + 2] << 7, at + 3
            else:
                length, start = _long_length(buffer, at)
                if start < 0:
                    return -1, -1
        if first >> 4 != PacketType.PUBLISH:
            packets.check_flags(first >> 4, first & 0x0F)
        if length > self.max_packet_bytes:
            raise ProtocolError(f"packet of {length} bytes; at most {self.max_packet_bytes}", 0x95)
        return start, start + length

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the acker wrote a PUBACK (the receive maximum was reached)."""
        while len(self._pending) >= self.receive_maximum and not self._closing:
            self._room = loop.create_future()
            await self._room

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

    def _handle(self, kind: int, body: bytes) -> bool:
        """One packet other than PUBLISH; False when the client left."""
        if kind == PacketType.PINGREQ:
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

    def _publish(self, flags: int, body: bytes) -> None:
        """Take one PUBLISH now; a QoS 1 one joins the PUBACK queue."""
        admitted = self.admitted
        assert admitted is not None  # noqa: S101 - _packets runs only after the handshake
        started = time.perf_counter()
        topic_raw, payload, qos, packet_id, alias = packets.publish_parts(
            flags, body, self.protocol
        )
        if qos == 2:
            raise ProtocolError("QoS 2 is not served (QoS 0 and 1 are)", QOS_NOT_SUPPORTED)
        if alias is not None:
            raise ProtocolError("topic aliases are not served", reason=0x94)
        if topic_raw != self._topic_raw:  # a device publishes on one topic: checked once
            self._topic, self._topic_raw = packets.text(topic_raw), topic_raw
        if not self.ingest.still_allowed(admitted.device):
            raise ProtocolError("the device is disabled, rotated or deleted", reason=0x87)
        reason, sending = self.ingest.take(admitted.device, self._topic, payload, self.clock())
        if packet_id is None:  # QoS 0: nothing to answer
            if sending is None:
                self.metrics.outcome(reason)
            else:
                sending.add_done_callback(partial(self.metrics.sent, reason=reason))
            return
        self._pending.append((packet_id, reason, sending, started))
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set_result(None)

    async def _ack_in_order(self) -> None:
        """PUBACK each QoS 1 publish, in order, once Kafka took it. The PUBACKs that are ready
        together go out in one write (a send a PUBACK was a system call a message); publishes
        that share an envelope are ready together."""
        pending, loop = self._pending, asyncio.get_running_loop()
        while self._ack_ready():
            if not pending:
                if self._ended:
                    return
                self._wake = loop.create_future()
                await self._wake
                continue
            head = pending[0][2]
            assert head is not None  # noqa: S101 - only an unsent future stops _ack_ready
            await asyncio.wait((head,))  # never cancels the envelope others wait for

    def _ack_ready(self) -> bool:
        """PUBACK the publishes at the head of the queue that Kafka has answered, in one write;
        False when a refusal of Kafka's ended the connection (MQTT 3.1.1)."""
        pending, metrics = self._pending, self.metrics
        ready, taken = bytearray(), list[float]()
        while pending:
            packet_id, reason, sending, started = pending[0]
            if sending is not None:
                if not sending.done():
                    break
                error = None if sending.cancelled() else sending.exception()
                if sending.cancelled() or error is not None:
                    metrics.not_taken("cancelled" if error is None else not_taken(error))
                    if self.protocol != packets.MQTT_5:  # no negative PUBACK: make it resend
                        self._give_up(error, ready, taken)
                        return False
                    reason = UNSPECIFIED
            if reason == SUCCESS:
                taken.append(started)
                ready += _PUBACK_HEAD + packet_id.to_bytes(2, "big")
            else:
                if reason != UNSPECIFIED:
                    metrics.outcome(reason)
                ready += packets.puback(self.protocol, packet_id, reason)
            pending.popleft()
        self._write_acks(ready, taken)
        return True

    def _give_up(self, error: BaseException | None, ready: bytearray, taken: list[float]) -> None:
        """Kafka did not take a reading of an MQTT 3.1.1 client: PUBACK what came before it,
        then disconnect without a PUBACK, so the client sends the message again."""
        log.warning("mqtt %s: Kafka did not take a reading (%s); disconnecting", self._who(), error)
        self._closing = True
        self._write_acks(ready, taken)
        self.writer.close()
        self._wake_reader()

    def _wake_reader(self) -> None:
        """The read loop may go on (there is room, or the connection is closing)."""
        room = self._room
        if room is not None:
            self._room = None
            room.set_result(None)

    def _write_acks(self, ready: bytearray, taken: list[float]) -> None:
        """Write the PUBACKs of ``ready``, count them, and wake who waits for room."""
        if ready:
            self.writer.write(bytes(ready))
            ready.clear()
        if taken:
            self.metrics.accepted(taken, time.perf_counter())
            taken.clear()
        if len(self._pending) < self.receive_maximum:
            self._wake_reader()
        drained = self._drained
        if drained is not None and not self._pending:
            self._drained = None
            drained.set_result(None)

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
        self._ended = True
        if acker is not None:
            wake = self._wake
            if wake is not None:  # the acker waits for a publish that will not come
                self._wake = None
                wake.set_result(None)
            # PUBACK what Kafka takes of what is in flight (bounded)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(acker), CONNECT_TIMEOUT_S)
            acker.cancel()
            with contextlib.suppress(BaseException):
                await acker
        for _, reason, sending, _ in self._pending:  # never PUBACKed: still counted
            if sending is None:
                self.metrics.outcome(reason)
            else:
                sending.add_done_callback(partial(self.metrics.sent, reason=reason))
        self._pending.clear()
        if self.admitted is not None:
            if sessions.get(self.admitted.client_id) is self:
                del sessions[self.admitted.client_id]
            self.metrics.connected(-1)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    def _who(self) -> str:
        return self.admitted.client_id if self.admitted else "(not connected)"


_PUBACK_HEAD = bytes([PacketType.PUBACK << 4, 2])
"""A success PUBACK is these two bytes and the packet id (both MQTT 3.1.1 and 5)."""


def _long_length(buffer: bytes, at: int) -> tuple[int, int]:
    """The remaining length of the packet at ``at`` whose length takes more than a byte, and
    where its body starts (-1: the header is not all in the buffer yet)."""
    length, shift = 0, 0
    for index in range(at + 1, at + 5):
        if index >= len(buffer):
            return 0, -1
        byte = buffer[index]
        length += (byte & 0x7F) << shift
        if not byte & 0x80:
            return length, index + 1
        shift += 7
    raise ProtocolError("remaining length longer than 4 bytes")


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

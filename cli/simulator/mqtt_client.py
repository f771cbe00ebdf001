"""A lean asyncio MQTT 5 client: one device's connection to the MQTT front.

Thousands of simulated devices each need a connection of their own (the client id is the device
id), which rules out a paho client and its thread per device. This client does what a device
does and nothing more: CONNECT with a persistent session (clean start off after the first
connect, a session expiry), QoS 1 PUBLISH with at most ``receive_maximum`` awaiting their PUBACK,
PINGREQ while idle, DISCONNECT. When the connection drops it reconnects with a capped backoff
and sends the publishes still awaiting a PUBACK again, flagged DUP, as the specification asks
(the front stores a repeat once: the event id travels in the payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

from connectors.mqtt.front.packets import PacketType, encode_varint, packet, property_bytes

SUCCESS = 0x00
NO_ANSWER = -1
"""The reason :meth:`MqttClient.connect` gives when no CONNACK came (refused socket, EOF)."""
RETRIABLE_CONNACKS = frozenset({0x86, 0x87, 0x88})
"""Refusals a newly registered device gets until the front has read the registry."""
_PINGREQ = packet(PacketType.PINGREQ, b"")
_DISCONNECT = packet(PacketType.DISCONNECT, b"")


class MqttTimeout(Exception):
    """No PUBACK came in time."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    keepalive_s: int = 60
    session_expiry_s: int = 3600
    receive_maximum: int = 64


def connect_packet(
    client_id: str, password: str, *, clean_start: bool, endpoint: Endpoint
) -> bytes:
    """CONNECT of MQTT 5: the username and the client id are the device id."""
    flags = 0x80 | 0x40 | (0x02 if clean_start else 0)
    props = property_bytes(0x11, endpoint.session_expiry_s, 4)
    body = (
        _text("MQTT") + bytes([5, flags]) + struct.pack(">H", endpoint.keepalive_s)
        + encode_varint(len(props)) + props
        + _text(client_id) + _text(client_id) + _binary(password.encode())
    )  # fmt: skip
    return packet(PacketType.CONNECT, body)


def publish_packet(topic: str, packet_id: int, payload: bytes, *, dup: bool = False) -> bytes:
    """PUBLISH with QoS 1 and no properties."""
    body = _text(topic) + struct.pack(">H", packet_id) + b"\x00" + payload
    return packet(PacketType.PUBLISH, body, flags=0x02 | (0x08 if dup else 0))


def puback_reason(body: bytes) -> tuple[int, int]:
    """(packet id, reason) of a PUBACK body; a two-byte PUBACK is a success."""
    packet_id = struct.unpack(">H", body[:2])[0]
    return packet_id, body[2] if len(body) > 2 else SUCCESS


def _text(value: str) -> bytes:
    return _binary(value.encode())


def _binary(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(first byte, body) of the next packet; raises IncompleteReadError at EOF."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return first, await reader.readexactly(length)


class MqttClient:
    """One device's connection; :meth:`publish` returns the PUBACK reason code."""

    def __init__(self, endpoint: Endpoint, client_id: str, password: str) -> None:
        self.endpoint, self.client_id, self._password = endpoint, client_id, password
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: dict[int, tuple[bytes, asyncio.Future[int]]] = {}
        self._window = asyncio.Semaphore(endpoint.receive_maximum)
        self._next_id = 0
        self._sessions = 0
        self._wanted = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def session_open(self) -> bool:
        """Connected, or connected until the link dropped and reconnecting in the background."""
        return self._wanted

    async def connect(self) -> int:
        """Connect (clean start only the first time); the CONNACK reason or NO_ANSWER."""
        try:
            reader, writer = await asyncio.open_connection(self.endpoint.host, self.endpoint.port)
        except OSError:
            return NO_ANSWER
        try:
            writer.write(
                connect_packet(self.client_id, self._password, clean_start=self._sessions == 0,
                               endpoint=self.endpoint)
            )  # fmt: skip
            reason = await self._connack(reader)
        except BaseException:  # cancelled (the run ends) or a packet it cannot read: not leaked
            writer.close()
            raise
        if reason != SUCCESS:
            writer.close()
            return reason
        self._sessions += 1
        self._writer, self._wanted = writer, True
        for _, (frame, _done) in sorted(self._inflight.items()):
            writer.write(_as_dup(frame))  # the session's publishes still awaiting a PUBACK
        self._tasks = [
            asyncio.create_task(self._read(reader, writer)),
            asyncio.create_task(self._ping(writer)),
        ]
        return SUCCESS

    async def publish(self, topic: str, payload: bytes, timeout_s: float) -> int:
        """Publish with QoS 1 and wait for the PUBACK (raises MqttTimeout)."""
        async with self._window:
            packet_id = self._packet_id()
            frame = publish_packet(topic, packet_id, payload)
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._inflight[packet_id] = (frame, done)
            if self._writer is not None:
                self._writer.write(frame)
            try:
                return await asyncio.wait_for(done, timeout_s)
            except TimeoutError as exc:
                raise MqttTimeout(f"no PUBACK within {timeout_s}s") from exc
            finally:
                self._inflight.pop(packet_id, None)

    async def disconnect(self) -> None:
        """Leave on purpose (DISCONNECT); the session stays for the next connect."""
        self._wanted = False
        writer, self._writer = self._writer, None
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.write(_DISCONNECT)
                await writer.drain()
            writer.close()

    async def _connack(self, reader: asyncio.StreamReader) -> int:
        try:
            first, body = await asyncio.wait_for(read_packet(reader), 15)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return NO_ANSWER
        if first >> 4 != PacketType.CONNACK or len(body) < 2:
            return NO_ANSWER
        return body[1]

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                first, body = await read_packet(reader)
                if first >> 4 == PacketType.PUBACK:
                    packet_id, reason = puback_reason(body)
                    entry = self._inflight.get(packet_id)
                    if entry is not None and not entry[1].done():
                        entry[1].set_result(reason)
                elif first >> 4 == PacketType.DISCONNECT:
                    break
        if self._writer is writer:  # lost, not left: come back with the session
            self._writer = None
            writer.close()
            asyncio.get_running_loop().call_soon(self._spawn_reconnect)

    def _spawn_reconnect(self) -> None:
        if self._wanted:
            self._tasks.append(asyncio.create_task(self._reconnect()))

    async def _reconnect(self) -> None:
        delay = 0.2
        while self._wanted and self._writer is None:
            await asyncio.sleep(delay)
            self.reconnects += 1
            if await self.connect() == SUCCESS:
                return
            delay = min(delay * 2, 5.0)

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await asyncio.sleep(self.endpoint.keepalive_s / 2)
                writer.write(_PINGREQ)

    def _packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight:
                return self._next_id


def _as_dup(frame: bytes) -> bytes:
    return bytes([frame[0] | 0x08]) + frame[1:]

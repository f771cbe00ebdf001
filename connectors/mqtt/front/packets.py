"""MQTT 3.1, 3.1.1 and 5 packets as an ingest-only server needs them (no I/O here).

The front reads CONNECT, PUBLISH (QoS 0 and 1), SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT
and writes their answers. Properties of MQTT 5 are parsed by their type (a property of an
unknown identifier is a protocol error, as the specification asks) and kept only where the
front reads them. A malformed packet raises :class:`ProtocolError`; the connection then closes
(MQTT 5: after a DISCONNECT naming the reason).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ProtocolError(Exception):
    """The peer broke the protocol; ``reason`` is the MQTT 5 reason code to close with."""

    def __init__(self, message: str, reason: int = 0x81) -> None:  # 0x81: malformed packet
        super().__init__(message)
        self.reason = reason


class UnsupportedLevel(ProtocolError):
    """A CONNECT of MQTT (by its name) at a level the front does not serve: MQTT 3.1.1 asks
    for a CONNACK with return code 0x01 before the close [MQTT-3.1.2-2]."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason=0x84)  # unsupported protocol version


MQTT_311: Final = 4
MQTT_5: Final = 5
PROTOCOLS: Final = {(b"MQTT", 4): MQTT_311, (b"MQTT", 5): MQTT_5, (b"MQIsdp", 3): 3}
_NAMES: Final = {name for name, _ in PROTOCOLS}

_FIXED_FLAGS: Final[dict[int, int]] = {
    PacketType.SUBSCRIBE: 0x02,
    PacketType.UNSUBSCRIBE: 0x02,
    PacketType.PUBREL: 0x02,
}
"""The fixed header's flags of every packet but PUBLISH: these, or 0 [MQTT-2.2.2-1]."""

# MQTT 5 property identifiers by data type (MQTT 5, 2.2.2.2).
_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_TWO = {0x13, 0x21, 0x22, 0x23}
_FOUR = {0x02, 0x11, 0x18, 0x27}
_VARINT = {0x0B}
_TEXT = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BINARY = {0x09, 0x16}
_PAIR = {0x26}
SESSION_EXPIRY: Final = 0x11
TOPIC_ALIAS: Final = 0x23
AUTH_METHOD: Final = 0x15


def check_flags(kind: int, flags: int) -> None:
    """Flags a packet type does not allow make the packet malformed [MQTT-2.2.2-2]."""
    if kind != PacketType.PUBLISH and flags != _FIXED_FLAGS.get(kind, 0):
        raise ProtocolError(f"packet type {kind} with flags {flags:#x}")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class Reader:
    """Reads the fields of one packet's body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise ProtocolError("packet ends early")
        value = self.data[self.at]
        self.at += 1
        return value

    def two(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def four(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.byte()
            value += (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ProtocolError("variable byte integer longer than 4 bytes")

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ProtocolError("packet ends early")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def binary(self) -> bytes:
        return self.take(self.two())

    def text(self) -> str:
        return text(self.binary())

    def rest(self) -> bytes:
        chunk = self.data[self.at :]
        self.at = len(self.data)
        return chunk

    def properties(self) -> dict[int, object]:
        """MQTT 5 properties (a user property keeps its last pair only)."""
        end = self.varint() + self.at
        found: dict[int, object] = {}
        while self.at < end:
            key = self.varint()
            found[key] = self._property(key)
        if self.at != end:
            raise ProtocolError("properties overrun their length")
        return found

    def _property(self, key: int) -> object:
        readers = (
            (_BYTE, self.byte),
            (_TWO, self.two),
            (_FOUR, self.four),
            (_VARINT, self.varint),
            (_TEXT, self.text),
            (_BINARY, self.binary),
        )
        for keys, read in readers:
            if key in keys:
                return read()
        if key in _PAIR:
            return (self.text(), self.text())
        raise ProtocolError(f"unknown property 0x{key:02x}")


@dataclass(frozen=True)
class Connect:
    protocol: int
    client_id: str
    clean_start: bool
    keepalive_s: int
    username: str | None
    password: bytes | None
    session_expiry_s: int = 0
    has_will: bool = False
    auth_method: str | None = None


def parse_connect(body: bytes) -> Connect:
    reader = Reader(body)
    name = reader.binary()
    level = reader.byte()
    protocol = PROTOCOLS.get((name, level))
    if protocol is None and name in _NAMES:
        raise UnsupportedLevel(f"protocol {name!r} level {level} is not served")
    if protocol is None:  # not MQTT at all: closed without an answer [MQTT-3.1.2-1]
        raise ProtocolError(f"protocol name {name!r} is not MQTT", reason=0x84)
    flags = reader.byte()
    if flags & 0x01:
        raise ProtocolError("reserved connect flag set")
    keepalive = reader.two()
    props = reader.properties() if protocol == MQTT_5 else {}
    client_id = reader.text()
    if flags & 0x04:  # a will: read past it (the front does not publish wills)
        if protocol == MQTT_5:
            reader.properties()
        reader.text()
        reader.binary()
    username = reader.text() if flags & 0x80 else None
    password = reader.binary() if flags & 0x40 else None
    expiry = props.get(SESSION_EXPIRY, 0)
    method = props.get(AUTH_METHOD)
    return Connect(
        protocol=protocol,
        client_id=client_id,
        clean_start=bool(flags & 0x02),
        keepalive_s=keepalive,
        username=username,
        password=password,
        session_expiry_s=expiry if isinstance(expiry, int) else 0,
        has_will=bool(flags & 0x04),
        auth_method=method if isinstance(method, str) else None,
    )


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int | None
    dup: bool
    retain: bool
    topic_alias: int | None = None


def parse_publish(flags: int, body: bytes, protocol: int) -> Publish:
    topic, payload, qos, packet_id, alias = publish_parts(flags, body, protocol)
    return Publish(
        topic=text(topic),
        payload=payload,
        qos=qos,
        packet_id=packet_id,
        dup=bool(flags & 0x08),
        retain=bool(flags & 0x01),
        topic_alias=alias,
    )


PublishParts = tuple[bytes, bytes, int, int | None, int | None]
"""A PUBLISH's topic (its UTF-8 bytes, not yet checked: :func:`text`), payload, QoS, packet
identifier (None at QoS 0) and topic alias."""


def publish_parts(flags: int, body: bytes, protocol: int) -> PublishParts:
    """A PUBLISH's fields without a :class:`Reader` or a dataclass (one call a message): an MQTT
    5 PUBLISH without properties, what devices send, is read by slicing; one with properties
    the :class:`Reader` reads."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("QoS 3 does not exist")
    size = len(body)
    at = 2 + (body[0] << 8 | body[1]) if size >= 2 else size + 1
    if at > size:
        raise ProtocolError("packet ends early")
    topic = body[2:at]
    packet_id = None
    if qos:
        if at + 2 > size:
            raise ProtocolError("packet ends early")
        packet_id = body[at] << 8 | body[at + 1]
        if packet_id == 0:
            raise ProtocolError("packet identifier 0")
        at += 2
    alias = None
    if protocol == MQTT_5:
        if at < size and body[at] == 0:  # no properties
            at += 1
        else:
            reader = Reader(body)
            reader.at = at
            found = reader.properties().get(TOPIC_ALIAS)
            alias = found if isinstance(found, int) else None
            at = reader.at
    return topic, body[at:], qos, packet_id, alias


def text(raw: bytes) -> str:
    """An MQTT UTF-8 string's text: UTF-8 without U+0000 [MQTT-1.5.4-1, MQTT-1.5.4-2]."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("a string is not UTF-8") from exc
    if "\x00" in decoded:
        raise ProtocolError("a string holds U+0000")
    return decoded


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    filters: list[str] = field(default_factory=list)


def parse_subscribe(body: bytes, protocol: int, *, unsubscribe: bool = False) -> Subscribe:
    reader = Reader(body)
    packet_id = reader.two()
    if protocol == MQTT_5:
        reader.properties()
    filters = []
    while reader.at < len(body):
        filters.append(reader.text())
        if not unsubscribe:
            reader.byte()  # requested QoS / subscription options
    if not filters:
        raise ProtocolError("no topic filter", reason=0x82)
    return Subscribe(packet_id, filters)


def packet(kind: PacketType, body: bytes, flags: int = 0) -> bytes:
    return bytes([kind << 4 | flags]) + encode_varint(len(body)) + body


def connack(protocol: int, reason: int, *, properties: bytes = b"") -> bytes:
    """A CONNACK with ``reason`` (an MQTT 5 reason code; mapped for older protocols)."""
    if protocol == MQTT_5:
        return packet(PacketType.CONNACK, bytes([0, reason]) + _props(properties))
    return packet(PacketType.CONNACK, bytes([0, _V3_CONNACK.get(reason, 0x03)]))


_V3_CONNACK = {0x00: 0x00, 0x84: 0x01, 0x85: 0x02, 0x88: 0x03, 0x86: 0x04, 0x87: 0x05}
"""MQTT 5 CONNACK reason → 3.1.1 return code (unlisted: server unavailable)."""


def puback(protocol: int, packet_id: int, reason: int = 0) -> bytes:
    if protocol == MQTT_5 and reason:
        return packet(PacketType.PUBACK, struct.pack(">HB", packet_id, reason))
    return packet(PacketType.PUBACK, struct.pack(">H", packet_id))


def suback(protocol: int, packet_id: int, filters: int) -> bytes:
    """Every filter refused: devices publish, they do not subscribe here."""
    if protocol == MQTT_5:
        refused = b"\x87" * filters  # not authorized
        return packet(PacketType.SUBACK, struct.pack(">H", packet_id) + b"\x00" + refused)
    return packet(PacketType.SUBACK, struct.pack(">H", packet_id) + b"\x80" * filters)


def unsuback(protocol: int, packet_id: int, filters: int) -> bytes:
    if protocol == MQTT_5:
        return packet(
            PacketType.UNSUBACK, struct.pack(">H", packet_id) + b"\x00" + b"\x11" * filters
        )
    return packet(PacketType.UNSUBACK, struct.pack(">H", packet_id))


PINGRESP: Final = packet(PacketType.PINGRESP, b"")


def disconnect(reason: int) -> bytes:
    """An MQTT 5 DISCONNECT from the server (older protocols just close)."""
    return packet(PacketType.DISCONNECT, bytes([reason]) + b"\x00")


def property_bytes(key: int, value: int | str, size: int = 0) -> bytes:
    """One MQTT 5 property: an integer of ``size`` bytes, or a string."""
    if isinstance(value, str):
        raw = value.encode()
        return bytes([key]) + struct.pack(">H", len(raw)) + raw
    return bytes([key]) + value.to_bytes(size, "big")


def _props(encoded: bytes) -> bytes:
    return encode_varint(len(encoded)) + encoded

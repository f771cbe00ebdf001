"""The MQTT front's refusals without a socket: malformed packets close the connection with
the right answer (and are counted), identities stay bound to credentials."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from connectors.mqtt.front import connection as connection_module
from connectors.mqtt.front import packets
from connectors.mqtt.front.connection import Connection
from connectors.mqtt.front.ingest import BAD_CLIENT_ID, Admitted, Ingest
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.front.packets import PacketType, ProtocolError
from connectors.mqtt.messages import TopicMatcher
from schemas.catalogue import GenericLimits
from schemas.devices import Device, hash_token
from tests import clock

TOKENS = {"dev-1": "token-1", "dev-2": "token-2", "fleetstream-bridge-1": "token-3"}


def _device(device_id: str) -> Device:
    now = clock.now()
    return Device(
        device_id=device_id, token_hash=hash_token(TOKENS[device_id]), created_at=now,
        updated_at=now,
    )  # fmt: skip


@dataclass
class _Registry:
    devices: dict[str, Device] = field(default_factory=lambda: {d: _device(d) for d in TOKENS})
    caught_up: bool = True

    def identify(self, token: str) -> Device | None:
        return next((d for d in self.devices.values() if d.token_hash == hash_token(token)), None)

    def get(self, record_id: str) -> Device | None:
        return self.devices.get(record_id)


class _Batcher:
    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        taken = asyncio.get_running_loop().create_future()
        taken.set_result(None)
        return taken


async def _produce(topic: str, records: Sequence[Any]) -> None:
    return None


def _ingest() -> Ingest:
    return Ingest(
        registry=_Registry(), matcher=TopicMatcher(["neurobuild/sensors/+/data"]),
        batcher=_Batcher(), produce=_produce, deadletter_topic="dead", max_items=10,
        max_bytes=10_000, limits=GenericLimits(),
    )  # fmt: skip


class _Writer:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else None


def _string(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def _connect(
    *, name: bytes = b"MQTT", level: int = 5, client_id: str = "dev-1", user: str = "dev-1",
    token: str = TOKENS["dev-1"], keepalive_s: int = 30,
) -> bytes:  # fmt: skip
    props = b"\x00" if level == 5 else b""
    body = (
        _string(name) + bytes([level, 0xC2]) + struct.pack(">H", keepalive_s) + props
        + _string(client_id.encode()) + _string(user.encode()) + _string(token.encode())
    )  # fmt: skip
    return packets.packet(PacketType.CONNECT, body)


async def _serve(data: bytes, *, eof: bool = True) -> tuple[_Writer, FrontMetrics]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    writer, metrics = _Writer(), FrontMetrics()
    connection = Connection(
        reader, cast(asyncio.StreamWriter, writer), _ingest(), metrics=metrics, clock=clock.now,
        max_packet_bytes=1000, receive_maximum=4,
    )  # fmt: skip
    await asyncio.wait_for(connection.serve({}), 5)
    return writer, metrics


def _refusals(metrics: FrontMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("fleet_mqtt_refusals_total", {"reason": reason})
    return value or 0.0


async def test_an_unsupported_level_of_mqtt_gets_connack_0x01_before_the_close() -> None:
    writer, metrics = await _serve(_connect(level=6))
    assert bytes(writer.sent) == b"\x20\x02\x00\x01"  # MQTT 3.1.1: unacceptable protocol level
    assert writer.closed
    assert _refusals(metrics, "connect:0x84") == 1


async def test_a_protocol_that_is_not_mqtt_is_closed_without_an_answer() -> None:
    writer, metrics = await _serve(_connect(name=b"MQTX", level=4))
    assert bytes(writer.sent) == b""
    assert writer.closed
    assert _refusals(metrics, "protocol:0x84") == 1


@pytest.mark.parametrize(
    "first", [b"\xc1\x00", b"\x80\x00", b"\xe2\x00"], ids=["pingreq", "subscribe", "disconnect"]
)
async def test_flags_a_packet_type_does_not_allow_close_an_mqtt_5_connection_with_0x81(
    first: bytes,
) -> None:
    writer, metrics = await _serve(_connect() + first)
    assert bytes(writer.sent).endswith(packets.disconnect(0x81))
    assert packets.PINGRESP not in bytes(writer.sent)
    assert _refusals(metrics, "protocol:0x81") == 1


def test_flags_are_checked_for_every_type_but_publish() -> None:
    packets.check_flags(PacketType.SUBSCRIBE, 0x02)
    packets.check_flags(PacketType.PUBLISH, 0x0B)
    packets.check_flags(PacketType.PINGREQ, 0)
    with pytest.raises(ProtocolError):
        packets.check_flags(PacketType.CONNECT, 0x01)
    with pytest.raises(ProtocolError):
        packets.check_flags(PacketType.UNSUBSCRIBE, 0)


async def test_a_peer_that_never_completes_connect_is_closed_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection_module, "CONNECT_TIMEOUT_S", 0.05)
    writer, metrics = await _serve(b"\x10\x30\x00\x04MQ", eof=False)  # 48 bytes said, 4 sent
    assert writer.closed
    assert _refusals(metrics, "connect-timeout") == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x10\xff\xff\xff\xff\x7f", "protocol:0x81"),  # a remaining length of 5 bytes
        (b"\x10\xff\xff\xff\x7f", "protocol:0x95"),  # 268,435,455 bytes declared
        (b"\x32\x05\x00\x01a\x00\x01", "protocol:0x82"),  # PUBLISH before CONNECT
        (packets.packet(PacketType.CONNECT, _string(b"MQTT") + b"\x04"), "protocol:0x81"),
    ],
    ids=["varint", "oversize", "publish-first", "truncated"],
)
async def test_malformed_first_packets_close_without_a_word(data: bytes, reason: str) -> None:
    writer, metrics = await _serve(data)
    assert bytes(writer.sent) == b""
    assert writer.closed
    assert _refusals(metrics, reason) == 1


def _parsed(**kw: Any) -> packets.Connect:
    return packets.parse_connect(_connect(**kw)[2:])


@pytest.mark.parametrize(
    "kw",
    [
        {"client_id": "dev-2"},  # another device's client id, own credentials
        {"client_id": "fleetstream-bridge-1"},  # the system's
        {"client_id": "fleetstream-bridge-1", "user": "fleetstream-bridge-1", "token": "token-3"},
    ],
    ids=["other-device", "system-id", "registered-under-a-system-id"],
)
def test_client_ids_of_others_and_of_the_system_are_refused(kw: dict[str, str]) -> None:
    assert _ingest().admit(_parsed(**kw)) == BAD_CLIENT_ID


def test_an_empty_client_id_becomes_the_device_id() -> None:
    admitted = _ingest().admit(_parsed(client_id=""))
    assert isinstance(admitted, Admitted) and admitted.client_id == "dev-1"


async def test_before_connect_a_stranger_may_not_declare_more_than_64_kib() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"\x10\x81\x80\x04")  # CONNECT of 65,537 bytes declared; nothing follows
    writer, metrics = _Writer(), FrontMetrics()
    connection = Connection(
        reader, cast(asyncio.StreamWriter, writer), _ingest(), metrics=metrics, clock=clock.now,
        max_packet_bytes=2_000_000, receive_maximum=4,
    )  # fmt: skip
    # without the bound it would wait for the 64 KiB body and time out here
    await asyncio.wait_for(connection.serve({}), 1)
    assert writer.closed
    assert _refusals(metrics, "protocol:0x95") == 1

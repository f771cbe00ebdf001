"""Seed 002's anonymous MQTT publishers on the front (its profile on): who is admitted, where
they may publish, and that they never take a session over."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import struct
from collections.abc import Sequence
from typing import Any, cast

import msgspec

from api.limits import RateLimiter
from connectors.mqtt.front import packets
from connectors.mqtt.front.connection import Connection
from connectors.mqtt.front.ingest import (
    BAD_CLIENT_ID,
    BAD_CREDENTIALS,
    NOT_AUTHORIZED,
    QUOTA_EXCEEDED,
    SEED_002_TOPIC,
    SUCCESS,
    Admitted,
    Anonymous,
    Ingest,
)
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.front.packets import PacketType
from connectors.mqtt.messages import TopicMatcher
from schemas.catalogue import GenericLimits
from schemas.settings import RateLimit
from tests import clock
from tests.unit.connectors.mqtt.test_front import _device, _produce, _Registry, _Writer

LAN = "10.1.2.3"


class _Batcher:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        self.items += items
        taken = asyncio.get_running_loop().create_future()
        taken.set_result(None)
        return taken


def _ingest(*, burst: int = 10, profile_on: bool = True) -> tuple[Ingest, _Batcher]:
    registry = _Registry()
    registry.devices["dev-off"] = msgspec.structs.replace(
        _device("dev-1"), device_id="dev-off", is_enabled=False
    )
    limiter = RateLimiter(RateLimit(per_s=0.001, burst=burst), {}, clock=lambda: 0.0)
    networks = [ipaddress.ip_network("10.0.0.0/8")]
    anonymous = Anonymous(networks, TopicMatcher([SEED_002_TOPIC]), limiter) if profile_on else None
    batcher = _Batcher()
    ingest = Ingest(
        registry=registry, matcher=TopicMatcher([SEED_002_TOPIC, "fleet/+/telemetry"]),
        batcher=batcher, produce=_produce, deadletter_topic="dead", max_items=10,
        max_bytes=10_000, limits=GenericLimits(), anonymous=anonymous,
    )  # fmt: skip
    return ingest, batcher


def _anonymous_connect(client_id: str = "") -> packets.Connect:
    return packets.Connect(
        protocol=packets.MQTT_5, client_id=client_id, clean_start=True, keepalive_s=30,
        username=None, password=None,
    )  # fmt: skip


def _payload(device_id: str) -> bytes:
    """Seed 002's integration test message."""
    reading = {
        "device_id": device_id,
        "timestamp": clock.now().isoformat(),
        "sensors": {"pir": {"motion_detected": True}},
    }
    return json.dumps(reading).encode()


def test_an_anonymous_connect_from_a_trusted_network_gets_a_session_of_its_own() -> None:
    ingest, _ = _ingest()
    admitted = ingest.admit(_anonymous_connect("dev-1"), peer=LAN)
    assert isinstance(admitted, Admitted)
    assert admitted.device is None
    assert admitted.client_id.startswith("anonymous/")  # never "dev-1": no device's session
    again = ingest.admit(_anonymous_connect("dev-1"), peer=LAN)
    assert isinstance(again, Admitted)
    assert again.client_id != admitted.client_id


def test_an_anonymous_connect_is_refused_elsewhere_without_the_profile_or_as_the_system() -> None:
    """Catches a front that admits anonymous CONNECTs from any address, with the profile off,
    or under the system's client ids."""
    ingest, _ = _ingest()
    assert ingest.admit(_anonymous_connect(), peer="192.0.2.1") == BAD_CREDENTIALS
    assert ingest.admit(_anonymous_connect(), peer=None) == BAD_CREDENTIALS
    assert ingest.admit(_anonymous_connect("fleetstream-bridge-1"), peer=LAN) == BAD_CREDENTIALS
    off, _ = _ingest(profile_on=False)
    assert off.admit(_anonymous_connect(), peer=LAN) == BAD_CREDENTIALS


def test_a_device_s_own_credentials_still_bind_its_client_id() -> None:
    ingest, _ = _ingest()
    connect = packets.Connect(
        protocol=packets.MQTT_5, client_id="dev-2", clean_start=True, keepalive_s=30,
        username="dev-1", password=b"token-1",
    )  # fmt: skip
    assert ingest.admit(connect, peer=LAN) == BAD_CLIENT_ID


async def test_anonymous_publishes_only_for_registered_enabled_devices_on_seed_002_s_topic() -> (
    None
):
    """Catches an anonymous path that takes any device id, a disabled one, or other topics."""
    ingest, batcher = _ingest()
    now = clock.now()
    ok = await ingest.publish(None, "neurobuild/sensors/dev-1/data", _payload("dev-1"), now)
    assert ok == SUCCESS
    assert len(batcher.items) == 1
    for topic, device_id in (
        ("neurobuild/sensors/dev-unknown/data", "dev-unknown"),
        ("neurobuild/sensors/dev-off/data", "dev-off"),
        ("fleet/dev-1/telemetry", "dev-1"),  # a canonical topic, not seed 002's
    ):
        assert await ingest.publish(None, topic, _payload(device_id), now) == NOT_AUTHORIZED
    assert len(batcher.items) == 1


async def test_anonymous_publishes_are_rate_limited_per_device() -> None:
    ingest, batcher = _ingest(burst=1)
    now = clock.now()
    topic = "neurobuild/sensors/{}/data"
    assert await ingest.publish(None, topic.format("dev-1"), _payload("dev-1"), now) == SUCCESS
    limited = await ingest.publish(None, topic.format("dev-1"), _payload("dev-1"), now)
    assert limited == QUOTA_EXCEEDED
    assert await ingest.publish(None, topic.format("dev-2"), _payload("dev-2"), now) == SUCCESS
    assert len(batcher.items) == 2


class _Session:
    def __init__(self) -> None:
        self.kicked: list[int] = []

    def kick(self, reason: int) -> None:
        self.kicked.append(reason)


class _LanWriter(_Writer):
    def get_extra_info(self, name: str) -> Any:
        return (LAN, 50000) if name == "peername" else None


def _anonymous_connect_packet(client_id: str) -> bytes:
    def string(raw: bytes) -> bytes:
        return struct.pack(">H", len(raw)) + raw

    # MQTT 5, clean start, no username or password
    body = string(b"MQTT") + bytes([5, 0x02]) + struct.pack(">H", 30) + b"\x00"
    return packets.packet(PacketType.CONNECT, body + string(client_id.encode()))


async def test_an_anonymous_connection_never_takes_over_a_device_s_session() -> None:
    """Catches an anonymous CONNECT that names a device's client id and kicks the device."""
    ingest, _ = _ingest()
    reader = asyncio.StreamReader()
    reader.feed_data(_anonymous_connect_packet("dev-1"))
    reader.feed_eof()
    device_session = _Session()
    sessions: dict[str, Any] = {"dev-1": device_session}
    writer = _LanWriter()
    connection = Connection(
        reader, cast(asyncio.StreamWriter, writer), ingest, metrics=FrontMetrics(),
        clock=clock.now, max_packet_bytes=1000, receive_maximum=4,
    )  # fmt: skip
    await asyncio.wait_for(connection.serve(sessions), 5)
    assert bytes(writer.sent).startswith(b"\x20")  # CONNACK
    assert bytes(writer.sent)[3] == 0  # success
    assert device_session.kicked == []
    assert sessions == {"dev-1": device_session}  # the anonymous one left, the device stays

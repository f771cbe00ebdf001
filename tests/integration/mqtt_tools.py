"""MQTT helpers for integration tests: a broker of our own, bridge processes, paho clients, and
raw packets for the MQTT front (malformed ones included).

Each MQTT test module gets its own Mosquitto, started by the stack code (``cli/stack``, the same
configuration and dynamic-security set-up as ``fleetstream stack up``) on a free port under a
temporary stack home, and stopped by its pid afterwards: device users, sessions and queued
messages of these tests never meet anybody else's.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client.parser import text_string_to_metric_families

from cli.stack import manager
from schemas.settings import Settings
from tests.integration.processes import ServiceProcess
from tests.support import free_port, wait_until

SEED_TOPIC = "neurobuild/sensors/{}/data"


def start_broker(stack_settings: Settings, home: Path) -> Iterator[Settings]:
    """``stack_settings`` pointing at a fresh broker of our own; stopped when the caller is."""
    settings = stack_settings.model_copy(
        update={
            "stack": stack_settings.stack.model_copy(update={"home": home}),
            "mqtt": stack_settings.mqtt.model_copy(update={"port": free_port()}),
        }
    )
    manager.up(settings, ["mosquitto"], progress=lambda line: print(f"broker: {line}"))
    try:
        yield settings
    finally:
        manager.down(settings, ["mosquitto"], progress=lambda line: print(f"broker: {line}"))


def with_broker(pipeline: Settings, broker: Settings, **mqtt_fields: Any) -> Settings:
    """The pipeline's settings on ``broker``, with a bridge session and share group of its own."""
    unique = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "port": broker.mqtt.port,
        "client_id": f"test-bridge-{unique}",
        "share_group": f"test-{unique}",
        "session_expiry_s": 600,
        "manage_device_credentials": True,  # devices publish to this broker, through the bridge
        **mqtt_fields,
    }
    return pipeline.model_copy(update={"mqtt": pipeline.mqtt.model_copy(update=fields)})


class BridgeProcess(ServiceProcess):
    command = "mqtt"


def mosquitto_pub(
    settings: Settings, username: str, password: str, topic: str, payload: bytes
) -> subprocess.CompletedProcess[str]:
    """``mosquitto_pub`` with MQTT 5 and QoS 1, as a device would publish."""
    argv = [
        "mosquitto_pub",
        "-h", settings.mqtt.host,
        "-p", str(settings.mqtt.port),
        "-u", username,
        "-P", password,
        "-V", "mqttv5",
        "-q", "1",
        "-t", topic,
        "-s",
    ]  # fmt: skip
    return subprocess.run(  # noqa: S603 - fixed program, our own arguments
        argv, input=payload.decode(), capture_output=True, text=True, timeout=30, check=False
    )


class Device:
    """A paho MQTT 5 client of one device; ``publish`` waits for the broker's PUBACK."""

    def __init__(self, settings: Settings, username: str, password: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-device-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self._settings = settings
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self.pubacks: dict[int, ReasonCode] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def connect(self, timeout_s: float = 5.0) -> ReasonCode | None:
        """The CONNACK reason (None when none came)."""
        self.client.connect(self._settings.mqtt.host, self._settings.mqtt.port)
        self.client.loop_start()
        self._connected.wait(timeout_s)
        return self.connack

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        with self._acked:
            self._acked.wait_for(lambda: info.mid in self.pubacks, timeout_s)
        assert info.mid in self.pubacks, f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def _on_connect(self, *args: Any) -> None:
        self.connack = args[3]
        self._connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._acked:
            self.pubacks[mid] = reason
            self._acked.notify_all()


def can_connect(settings: Settings, username: str, password: str) -> bool:
    device = Device(settings, username, password)
    try:
        reason = device.connect()
        return reason is not None and not reason.is_failure
    finally:
        device.close()


class FrontDevice:
    """A device's paho client of the MQTT front (MQTT 3.1.1 or 5): client id = device id by
    default; ``publish`` waits for the PUBACK."""

    def __init__(self, settings: Settings, username: str, password: str, *,
                 client_id: str | None = None,
                 protocol: MQTTProtocolVersion = mqtt.MQTTv5) -> None:  # fmt: skip
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=username if client_id is None else client_id,
            protocol=protocol,
        )
        self.client.username_pw_set(username, password)
        self.settings = settings
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.acked: dict[int, ReasonCode] = {}
        self.disconnects: list[ReasonCode] = []
        """Why the front (or the network) ended each connection."""
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.reconnect_delay_set(1, 4)  # back soon after a restart of the front

    def connect(self) -> ReasonCode | None:
        self.client.connect("127.0.0.1", self.settings.mqtt_front.port, keepalive=30)
        self.client.loop_start()
        self.connected.wait(10)
        return self.connack

    def publish(self, topic: str, payload: bytes, timeout_s: float = 15.0) -> ReasonCode | None:
        info = self.client.publish(topic, payload, qos=1)
        with self._cond:
            self._cond.wait_for(lambda: info.mid in self.acked, timeout_s)
        return self.acked.get(info.mid)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, *args: Any) -> None:
        self.connack = args[3]
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.acked[mid] = reason
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        self.disconnects.append(reason)
        self.disconnected.set()


# -- raw MQTT for the front: what paho would never send ----------------------------------------

SESSION_TAKEN_OVER = 0x8E


def frame(first: int, body: bytes) -> bytes:
    """A packet: fixed header byte, remaining length (MQTT's variable byte integer), body."""
    length, size = bytearray(), len(body)
    while True:
        size, byte = divmod(size, 128)
        length.append(byte | (0x80 if size else 0))
        if not size:
            return bytes([first]) + bytes(length) + body


def text(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def connect_packet(user: str, token: str, *, client_id: str | None = None, level: int = 5,
                   name: bytes = b"MQTT", flags: int = 0xC2) -> bytes:  # fmt: skip
    """CONNECT with username and password (clean start, keep-alive 30 s)."""
    props = b"\x00" if level == 5 else b""
    cid = user if client_id is None else client_id
    body = (
        text(name) + bytes([level, flags]) + struct.pack(">H", 30) + props + text(cid.encode())
        + text(user.encode()) + text(token.encode())
    )  # fmt: skip
    return frame(0x10, body)


def publish_packet(topic: bytes, payload: bytes, *, qos: int = 1, props: bytes = b"\x00",
                   packet_id: int = 1) -> bytes:  # fmt: skip
    """An MQTT 5 PUBLISH (``props`` as encoded, length included)."""
    pid = struct.pack(">H", packet_id) if qos else b""
    return frame(0x30 | qos << 1, text(topic) + pid + props + payload)


def connack(reason: int, *, level: int = 5) -> bytes:
    """A refusing CONNACK as the front writes it (MQTT 3.1.1 return codes for level 4)."""
    if level == 5:
        return bytes([0x20, 3, 0, reason, 0])
    return bytes([0x20, 2, 0, reason])


def disconnect(reason: int) -> bytes:
    return bytes([0xE0, 2, reason, 0])


class NotServing(Exception):
    """The front did not take the probe's own CONNECT (it is away or restarting)."""


async def exchange(
    port: int, data: bytes, *, connect: bytes | None, within_s: float
) -> bytes | None:
    """Send ``data`` to the front (after ``connect``, whose CONNACK must say success) and
    read what it answers until it closes; None when it has not closed within ``within_s``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    try:
        if connect is not None:
            await _connected(reader, writer, connect, within_s)
        writer.write(data)
        async with asyncio.timeout(within_s):
            while chunk := await reader.read(4096):
                received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass  # a close with bytes unread on its side is a reset: closed all the same
    finally:
        writer.close()
    return bytes(received)


async def _connected(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connect: bytes, within_s: float
) -> None:
    writer.write(connect)
    try:
        async with asyncio.timeout(within_s):
            head = await reader.readexactly(2)
            body = await reader.readexactly(head[1])
    except (TimeoutError, ConnectionResetError, asyncio.IncompleteReadError) as exc:
        raise NotServing(f"no CONNACK: {exc!r}") from exc
    if head[0] != 0x20 or body[1] != 0:
        raise NotServing(f"CONNACK {(head + body).hex()}")


async def front_refusals(client: httpx.AsyncClient, settings: Settings) -> Counter[str]:
    """The front's ``fleet_mqtt_refusals`` counter by reason (since it started)."""
    url = f"http://127.0.0.1:{settings.mqtt_front.health_port}/metrics"
    body = (await client.get(url)).text
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "fleet_mqtt_refusals_total":
                found[sample.labels["reason"]] = int(sample.value)
    return found


async def front_healthy(client: httpx.AsyncClient, settings: Settings) -> bool:
    url = f"http://127.0.0.1:{settings.mqtt_front.health_port}/health"
    try:
        return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


@dataclass(frozen=True)
class Probe:
    """Bytes a hostile client sends the front, and what must come of them."""

    name: str
    data: bytes
    answer: bytes
    """All the front writes before it closes the connection."""
    refusal: str
    """The reason of ``fleet_mqtt_refusals`` that grows by exactly one."""
    connect: bytes | None = None
    """The probing device's own CONNECT, taken first (MQTT 5: refusals then name a reason)."""


MALFORMED_AFTER_CONNECT = 9
"""Probes of ``malformed_probes`` sent after a CONNECT: each needs a device of its own, as they
run at once (a second connection of one client would take the first one's session)."""


def malformed_probes(devices: Sequence[tuple[str, str]]) -> list[Probe]:
    """Malformed packets, before CONNECT and after a valid CONNECT of each of ``devices`` (id,
    token). Each catches a front that lacks one check: it would answer, wait for bytes that
    never come, or read on."""
    device_id, token = devices[0]
    own = connect_packet(device_id, token)
    topic = SEED_TOPIC.format(device_id).encode()
    body = b'{"temperature": 21.5}'
    bad = 0x81  # malformed packet
    after = [
        ("QoS 3", frame(0x36, text(topic) + b"\x00\x01\x00" + body), bad),
        ("topic not UTF-8", publish_packet(b"neurobuild/sensors/\xff\xfe/data", body), bad),
        ("topic with U+0000", publish_packet(topic + b"\x00", body), bad),
        ("packet identifier 0", publish_packet(topic, body, packet_id=0), bad),
        ("unknown MQTT 5 property", publish_packet(topic, body, props=b"\x02\x7f\x00"), bad),
        ("QoS 2 (not served)", publish_packet(topic, body, qos=2), 0x9B),
        ("a second CONNECT", b"", 0x82),  # protocol error: the device's CONNECT again
        ("PINGREQ with flags", b"\xc1\x00", bad),
        ("256 MiB declared after CONNECT", b"\x30\xff\xff\xff\x7f", 0x95),  # packet too large
    ]
    return [
        Probe("remaining length of 5 bytes", b"\x10\xff\xff\xff\xff", b"", "protocol:0x81"),
        Probe("256 MiB declared", b"\x10\xff\xff\xff\x7f", b"", "protocol:0x95"),
        Probe("PUBLISH before CONNECT", publish_packet(topic, body), b"", "protocol:0x82"),
        Probe("CONNECT cut short", frame(0x10, text(b"MQTT") + b"\x05"), b"", "protocol:0x81"),
        Probe("CONNECT with the reserved flag", connect_packet(device_id, token, flags=0xC3), b"",
              "protocol:0x81"),
        Probe("flags on CONNECT's fixed header", b"\x11" + own[1:], b"", "protocol:0x81"),
        Probe("protocol name MQTX", connect_packet(device_id, token, name=b"MQTX", level=4), b"",
              "protocol:0x84"),
        Probe("MQTT level 6", connect_packet(device_id, token, level=6), connack(0x01, level=4),
              "connect:0x84"),
        *(_after_connect(name, data, reason, prober) for (name, data, reason), prober
          in zip(after, devices[:MALFORMED_AFTER_CONNECT], strict=True)),
    ]  # fmt: skip


def _after_connect(name: str, data: bytes, reason: int, device: tuple[str, str]) -> Probe:
    """``data`` (empty: the CONNECT again) on a connection of ``device``. Topics may name the
    first device: each packet is refused before its topic is looked at."""
    own = connect_packet(*device)
    return Probe(name, data or own, disconnect(reason), f"protocol:{reason:#x}", own)


def clash_probes(
    device_id: str, token: str, victims: Sequence[str], system_ids: Sequence[str],
    registered_as_system: tuple[str, str],
) -> list[Probe]:  # fmt: skip
    """CONNECTs of ``device_id`` (its own valid token) that claim another identity: each must be
    refused with the CONNACK that says why. ``registered_as_system`` is a registered device
    whose id is one the system keeps for itself (with its token)."""
    bad_id = 0x85  # client identifier not valid (MQTT 3.1.1: 0x02, identifier rejected)
    reserved, reserved_token = registered_as_system
    probes = [
        Probe(f"client id of {victim}", connect_packet(device_id, token, client_id=victim),
              connack(bad_id), "connect:0x85")
        for victim in victims
    ]  # fmt: skip
    return [
        *probes,
        Probe("client id of another device, MQTT 3.1.1",
              connect_packet(device_id, token, client_id=victims[0], level=4),
              connack(0x02, level=4), "connect:0x85"),
        Probe("another device's id as username", connect_packet(victims[0], token),
              connack(0x86), "connect:0x86"),  # bad user name or password
        *(Probe(f"system client id {cid}", connect_packet(device_id, token, client_id=cid),
                connack(bad_id), "connect:0x85") for cid in system_ids),
        Probe("a device registered under a system id", connect_packet(reserved, reserved_token),
              connack(bad_id), "connect:0x85"),
    ]  # fmt: skip


STALLED = Probe("CONNECT never completed", b"\x10\x30\x00\x04MQ", b"", "connect-timeout")
"""48 bytes announced, 4 sent: the front must close it by its CONNECT deadline (10 s)."""


async def once_admitted(
    make: Callable[[], FrontDevice], what: str, timeout_s: float = 30.0
) -> FrontDevice:
    """A client from ``make``, connected once the front admits it (its registry copy follows
    the topic, so a device just registered may be refused for a moment)."""
    clients: list[FrontDevice] = []

    async def accepted() -> bool:
        client = make()
        if await asyncio.to_thread(client.connect) == 0:
            clients.append(client)
            return True
        client.close()
        return False

    await wait_until(accepted, timeout_s=timeout_s, what=what)
    return clients[0]

"""The MQTT front's TLS listener: devices publish over TLS with their own credentials, the plain
listener can be turned off, and plain MQTT sent to the TLS port gets no answer."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from schemas.events import RawEvent
from schemas.settings import Settings
from tests import clock
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.kafka_tools import raw_events, read_all
from tests.integration.mqtt_tools import FrontDevice, once_admitted
from tests.integration.processes import FrontProcess
from tests.support import free_port, wait_until

TOPIC = "neurobuild/sensors/{}/data"
# A CONNECT of MQTT 3.1.1 (client id "x", clean session): what a device without TLS would send.
PLAIN_CONNECT = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 1]) + b"x"


class TlsDevice(FrontDevice):
    """A device's paho client that connects to the TLS port, trusting ``ca``."""

    def __init__(self, settings: Settings, device_id: str, token: str, ca: Path) -> None:
        super().__init__(settings, device_id, token, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)

    def connect(self) -> ReasonCode | None:
        self.client.connect("127.0.0.1", self.settings.mqtt_front.tls_port, keepalive=30)
        self.client.loop_start()
        self.connected.wait(10)
        return self.connack


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl (valid from now, for a day)."""
    cert, key = folder / "front.pem", folder / "front.key"
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl (Debian's openssl package) makes the test certificate"
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_front(pipeline: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """A front with its TLS listener only (the plain one off)."""
    cert, key = self_signed(tmp_path)
    front = pipeline.mqtt_front.model_copy(
        update={
            "plain": False,
            "port": free_port(),
            "tls_port": free_port(),
            "health_port": free_port(),
            "tls_certfile": str(cert),
            "tls_keyfile": str(key),
        }
    )
    settings = pipeline.model_copy(update={"mqtt_front": front})
    process = FrontProcess(settings, tmp_path / "front.log")
    process.start()
    health = f"http://127.0.0.1:{front.health_port}/health"

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(health)).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_until(healthy, timeout_s=60, what=process.log_tail)
        async with httpx.AsyncClient() as client:
            listening = (await client.get(health)).json()["listening"]
        assert listening == [f"mqtts://127.0.0.1:{front.tls_port}"]
        yield settings
    finally:
        process.stop()


def _plain_connect_answer(port: int) -> bytes:
    """What the port answers to a plain MQTT CONNECT (b"" when it closes without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(PLAIN_CONNECT)
        try:
            return sock.recv(64)
        except ConnectionResetError:
            return b""


async def test_a_device_publishes_over_tls_and_plain_mqtt_finds_no_listener(
    fleet: Fleet, tls_front: Settings, tmp_path: Path
) -> None:
    (device_id,) = device_ids(1, "tls")
    await fleet.enroll([device_id])
    ca = Path(tls_front.mqtt_front.tls_certfile)
    event_id = str(uuid.uuid4())
    body = reading(device_id) | {"timestamp": clock.now().isoformat(), "event_id": event_id}
    client = await once_admitted(
        lambda: TlsDevice(tls_front, device_id, fleet.tokens[device_id], ca),
        f"a TLS connection of {device_id}",
    )
    try:
        payload = json.dumps(body).encode()
        assert await asyncio.to_thread(client.publish, TOPIC.format(device_id), payload) == 0
    finally:
        client.close()
    # PUBACKed means on the raw topic
    records = read_all(tls_front.kafka.bootstrap_servers, tls_front.topics.raw, 1, timeout_s=30)
    events: list[RawEvent] = [event for record in records for event in raw_events(record)]
    assert [event.device_id for event in events] == [device_id]

    with pytest.raises(ConnectionRefusedError):  # the plain listener is off
        socket.create_connection(("127.0.0.1", tls_front.mqtt_front.port), timeout=5).close()
    # plain MQTT on the TLS port: the handshake fails and no CONNACK (0x20) ever comes
    answer = await asyncio.to_thread(_plain_connect_answer, tls_front.mqtt_front.tls_port)
    assert not answer.startswith(b"\x20"), answer

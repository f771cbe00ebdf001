"""MQTT helpers for integration tests: a broker of our own, bridge processes, paho clients.

Each MQTT test module gets its own Mosquitto, started by the stack code (``cli/stack``, the same
configuration and dynamic-security set-up as ``fleetstream stack up``) on a free port under a
temporary stack home, and stopped by its pid afterwards: device users, sessions and queued
messages of these tests never meet anybody else's.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from cli.stack import manager
from schemas.settings import Settings
from tests.integration.processes import ServiceProcess
from tests.support import free_port

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
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_publish = self._on_publish

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

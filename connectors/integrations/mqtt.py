"""MQTT publish calls of flows: one paho client per worker, logged in as the flows user.

The broker allows no anonymous clients, so flows publish as ``FLEET_MQTT__FLOWS_USERNAME``. The
first connection makes sure that user exists (over dynamic security, as the broker admin,
idempotently): its role may publish to ``FLEET_MQTT__FLOWS_TOPICS`` and never to the device
topics the bridge takes (``FLEET_MQTT__TOPICS``), so a flow cannot feed readings back in.

QoS 1 publishes wait for the broker's PUBACK; an MQTT 5 PUBACK that refuses (e.g. not
authorized) is a permanent failure, a broker that does not answer in time a retriable one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from connectors.integrations.errors import CallFailed
from connectors.mqtt.credentials import (
    TOLERATED,
    admin_client,
    allows_anonymous,
    enable_command,
)
from connectors.mqtt.dynsec import Command, check
from connectors.mqtt.errors import BrokerUnavailable, DynsecRefused
from schemas.flows import Outbound
from schemas.settings import MqttSettings

log = logging.getLogger(__name__)

FLOWS_ROLE = "fleet-flows"


def flows_user_commands(settings: MqttSettings) -> list[Command]:
    """The flows user's role (publish where allowed, never to device topics) and client."""
    allowed = [topic.strip() for topic in settings.flows_topics.split(",") if topic.strip()]
    acls: list[Command] = [
        {
            "command": "addRoleACL",
            "rolename": FLOWS_ROLE,
            "acltype": "publishClientSend",
            "topic": pattern,
            "priority": 10,
            "allow": False,
        }
        for pattern in settings.topic_patterns
    ]
    acls += [
        {
            "command": "addRoleACL",
            "rolename": FLOWS_ROLE,
            "acltype": "publishClientSend",
            "topic": pattern,
            "priority": 0,
            "allow": True,
        }
        for pattern in allowed
    ]
    client = {
        "username": settings.flows_username,
        "password": settings.flows_password.get_secret_value(),
        "roles": [{"rolename": FLOWS_ROLE}],
    }
    return [
        {"command": "createRole", "rolename": FLOWS_ROLE},
        *acls,
        {"command": "createClient", **client},
        {"command": "modifyClient", **client},
        enable_command(settings.flows_username, True),
    ]


def ensure_flows_user(settings: MqttSettings) -> None:
    """Create or update the flows user (idempotent); raises ``BrokerUnavailable`` or
    ``DynsecRefused``."""
    with admin_client(settings) as dynsec:
        check(dynsec.execute(flows_user_commands(settings)), TOLERATED)


class MqttSender:
    """Publishes flow calls; connects (and sets up the flows user) on first use."""

    def __init__(self, settings: MqttSettings) -> None:
        self._settings = settings
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._acks: dict[int, tuple[threading.Event, list[ReasonCode]]] = {}

    async def send(self, call: Outbound) -> None:
        await asyncio.to_thread(self._send, call)

    async def close(self) -> None:
        client = self._client
        if client is not None:
            await asyncio.to_thread(_stop, client)
            self._client = None

    def _send(self, call: Outbound) -> None:
        client = self._connect(call.timeout_s)
        done = threading.Event()
        reasons: list[ReasonCode] = []
        with self._lock:
            info = client.publish(call.target, call.body, qos=call.qos, retain=call.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise CallFailed(
                    f"MQTT publish failed: {mqtt.error_string(info.rc)}", retriable=True
                )
            if call.qos == 0:
                return
            self._acks[info.mid] = (done, reasons)
        if not done.wait(call.timeout_s):
            with self._lock:
                self._acks.pop(info.mid, None)
            raise CallFailed(f"no PUBACK within {call.timeout_s}s", retriable=True)
        if reasons and reasons[0].is_failure:
            raise CallFailed(f"the broker refused the publish: {reasons[0]}", retriable=False)

    def _connect(self, timeout_s: float) -> mqtt.Client:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            client = self._client
        if not self._connected.wait(timeout_s):
            raise CallFailed(
                f"not connected to the MQTT broker {self._settings.host}:{self._settings.port}",
                retriable=True,
            )
        return client

    def _new_client(self) -> mqtt.Client:
        settings = self._settings
        try:
            if allows_anonymous(settings.host, settings.port):
                log.warning(
                    "MQTT broker %s:%d lets anonymous clients in (no dynamic security): flows "
                    "publish without a user of their own there",
                    settings.host,
                    settings.port,
                )
            else:
                ensure_flows_user(settings)
        except (BrokerUnavailable, DynsecRefused) as exc:
            raise CallFailed(f"cannot set up the flows MQTT user: {exc}", retriable=True) from exc
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fleetstream-flows-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(settings.flows_username, settings.flows_password.get_secret_value())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(1, 5)
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        client.loop_start()
        return client

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.warning("flows MQTT client refused by the broker: %s", reason)
            return
        self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            waiting = self._acks.pop(mid, None)
        if waiting is not None:
            waiting[1].append(reason)
            waiting[0].set()


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()

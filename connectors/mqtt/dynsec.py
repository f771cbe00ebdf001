"""A small client of Mosquitto's dynamic-security plugin (``$CONTROL/dynamic-security/v1``).

Commands are JSON objects (``{"command": "createClient", "username": ..., ...}``); the plugin
answers each on ``$CONTROL/dynamic-security/v1/response`` with the same ``correlationData`` and an
``error`` when it refused. :meth:`DynsecClient.execute` sends a list of commands in one message
(the plugin runs them in order, in the broker's own thread) and returns every answer.

Blocking and thread-safe: paho's network thread delivers the answers, callers wait on an event.
Used by ``stack up`` (broker users and roles), by the device registry (a device's password when
its token is made) and by the bridge's credential sync (enable, disable, delete).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from connectors.mqtt.errors import BrokerUnavailable, DynsecRefused

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

Command = dict[str, Any]


@dataclass
class Answer:
    command: str
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class _Pending:
    def __init__(self, count: int) -> None:
        self.answers: dict[str, Answer] = {}
        self.count = count
        self.done = threading.Event()


class DynsecClient:
    """One admin connection to the broker; ``connect()`` once, ``close()`` once."""

    def __init__(
        self, host: str, port: int, username: str, password: str, *, timeout_s: float = 5.0
    ) -> None:
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fleetstream-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._ready = threading.Event()
        self._refused: str | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def connect(self) -> None:
        """Log in and subscribe to the answers; raises :class:`BrokerUnavailable`."""
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(f"MQTT broker {self._host}:{self._port}: {exc}") from exc
        self._client.loop_start()
        if not self._ready.wait(self._timeout_s) or self._refused is not None:
            self.close()
            reason = self._refused or f"no answer in {self._timeout_s:.0f} s"
            raise BrokerUnavailable(
                f"MQTT broker {self._host}:{self._port} as the admin user: {reason}"
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> DynsecClient:
        self.connect()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def execute(self, commands: Sequence[Command]) -> list[Answer]:
        """Run ``commands`` in order; every answer, refusals included (see :func:`check`)."""
        if not commands:
            return []
        ids = [uuid.uuid4().hex for _ in commands]
        pending = _Pending(len(commands))
        with self._lock:
            for correlation in ids:
                self._pending[correlation] = pending
        body = [
            {**command, "correlationData": correlation}
            for command, correlation in zip(commands, ids, strict=True)
        ]
        try:
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": body}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerUnavailable(f"dynamic security command not sent: {info.rc}")
            if not pending.done.wait(self._timeout_s):
                raise BrokerUnavailable(
                    f"dynamic security did not answer in {self._timeout_s:.0f} s "
                    "(is the plugin loaded, and the admin user allowed on $CONTROL?)"
                )
        finally:
            with self._lock:
                for correlation in ids:
                    self._pending.pop(correlation, None)
        return [pending.answers[correlation] for correlation in ids]

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._ready.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _m: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            self._refused = f"may not subscribe to {RESPONSE_TOPIC}"
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            log.warning("unreadable dynamic security answer skipped")
            return
        for response in responses:
            correlation = response.get("correlationData")
            with self._lock:
                pending = self._pending.get(correlation)
                if pending is None:
                    continue
                pending.answers[correlation] = Answer(
                    str(response.get("command")), response.get("error"), response.get("data", {})
                )
                if len(pending.answers) == pending.count:
                    pending.done.set()


def check(answers: Iterable[Answer], tolerated: Iterable[str] = ()) -> None:
    """Raise :class:`DynsecRefused` for the first refusal whose error is not ``tolerated``."""
    allowed = set(tolerated)
    for answer in answers:
        if answer.error is not None and answer.error not in allowed:
            raise DynsecRefused(answer.command, answer.error)

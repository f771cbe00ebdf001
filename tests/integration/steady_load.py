"""Steady, bounded device load for failure tests: registered devices send one reading at a time
at a fixed pace, over HTTP (one reading per request) and over MQTT QoS 1 (MQTT 5, so a reading
Kafka did not take gets a negative PUBACK), and every answer is recorded with its times.

Each reading carries its own ``event_id``, so the test can look each acked one up in Postgres.
Load stops when ``stop`` is set; nothing here retries (a retry would hide what was answered).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from schemas.settings import Settings
from tests import clock
from tests.factories import reading
from tests.integration.mqtt_tools import FrontDevice

MQTT_TOPIC = "neurobuild/sensors/{}/data"
NO_ANSWER = -1
"""The status of a request or publish that got no answer at all (connection lost, timeout)."""


@dataclass(frozen=True)
class Answer:
    """One reading sent: its channel, id, when (monotonic s) it went and came back, and the
    answer: an HTTP status, or an MQTT PUBACK reason code."""

    channel: str
    event_id: str
    sent_at: float
    answered_at: float
    status: int
    retry_after: str | None = None

    @property
    def acked(self) -> bool:
        if self.channel == "http":
            return 200 <= self.status < 300
        return 0 <= self.status < 0x80


def _body(device_id: str, n: int) -> dict[str, Any]:
    at = clock.now().replace(microsecond=0).isoformat()
    return reading(device_id, n) | {"timestamp": at, "event_id": str(uuid.uuid4())}


async def http_device(
    client: httpx.AsyncClient,
    device_id: str,
    token: str,
    interval_s: float,
    stop: asyncio.Event,
    answers: list[Answer],
) -> None:
    """Post a reading every ``interval_s`` (the next one after the answer, at the earliest)."""
    n = 0
    while not stop.is_set():
        body = _body(device_id, n)
        sent = time.monotonic()
        try:
            response = await client.post(
                "/v1/readings", json=body, headers={"X-API-Key": token}, timeout=30
            )
            status, retry_after = response.status_code, response.headers.get("Retry-After")
        except httpx.TransportError:
            status, retry_after = NO_ANSWER, None
        answers.append(
            Answer("http", body["event_id"], sent, time.monotonic(), status, retry_after)
        )
        n += 1
        pause = interval_s - (time.monotonic() - sent)
        if pause > 0:  # the pace of the load, not a wait for a condition
            await asyncio.sleep(pause)


class MqttLoad:
    """MQTT devices, each publishing in a thread of its own (never in asyncio's default
    executor: they run for the whole test and would starve every other ``to_thread``)."""

    def __init__(self, answers: list[Answer], interval_s: float) -> None:
        self.answers = answers
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, settings: Settings, device_id: str, token: str) -> None:
        thread = threading.Thread(
            target=self._run, args=(settings, device_id, token), name=f"load-{device_id}"
        )
        thread.start()
        self.threads.append(thread)

    def finish(self) -> None:
        """Stop every device, wait for its last PUBACK, and raise what any of them raised."""
        self.stop.set()
        for thread in self.threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def _run(self, settings: Settings, device_id: str, token: str) -> None:
        try:
            mqtt_device(settings, device_id, token, self.interval_s, self.stop, self.answers)
        except BaseException as exc:  # noqa: BLE001 - handed to finish(), in the test's thread
            self.errors.append(exc)


def mqtt_device(
    settings: Settings,
    device_id: str,
    token: str,
    interval_s: float,
    stop: threading.Event,
    answers: list[Answer],
) -> None:
    """Publish a reading at QoS 1 every ``interval_s`` through the front of ``settings``
    (blocking). The client must connect at once (the device is known)."""
    client = FrontDevice(settings, device_id, token)
    reason = client.connect()
    assert reason is not None and not reason.is_failure, f"{device_id}: CONNACK {reason}"
    n = 0
    try:
        while not stop.is_set():
            body = _body(device_id, n)
            sent = time.monotonic()
            puback = client.publish(MQTT_TOPIC.format(device_id), json.dumps(body).encode(), 30)
            status = NO_ANSWER if puback is None else puback.value
            answers.append(Answer("mqtt", body["event_id"], sent, time.monotonic(), status))
            n += 1
            stop.wait(max(0.0, interval_s - (time.monotonic() - sent)))
    finally:
        client.close()

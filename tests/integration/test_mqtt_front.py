"""The MQTT front through the real stack: devices authenticated from the registry, PUBACK only
once Kafka acked, identities bound to credentials, and no PUBACKed reading lost to kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from schemas.settings import Settings
from tests import clock
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.mqtt_tools import FrontDevice, once_admitted
from tests.integration.processes import FrontProcess, WorkerProcess
from tests.support import free_port, wait_until

TOPIC = "neurobuild/sensors/{}/data"
KILLS = 20
REGISTRATIONS = 1000 if os.environ.get("FLEET_SOAK_S") else 300
"""Devices registered in a row: 300 in ``make test`` (~100 ms each here), 1,000 in ``make soak``."""


@pytest.fixture
def front_settings(pipeline: Settings) -> Settings:
    front = pipeline.mqtt_front.model_copy(update={"port": free_port(), "health_port": free_port()})
    mqtt_settings = pipeline.mqtt.model_copy(update={"manage_device_credentials": False})
    return pipeline.model_copy(update={"mqtt_front": front, "mqtt": mqtt_settings})


async def _healthy(settings: Settings) -> bool:
    url = f"http://127.0.0.1:{settings.mqtt_front.health_port}/health"
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
async def front(front_settings: Settings, tmp_path: Path) -> AsyncIterator[FrontProcess]:
    process = FrontProcess(front_settings, tmp_path / "front.log")
    process.start()
    try:
        await wait_until(lambda: _healthy(front_settings), timeout_s=60, what=process.log_tail)
        yield process
    finally:
        process.stop()


async def connected(settings: Settings, device_id: str, token: str, **kw: Any) -> FrontDevice:
    """A connected client of the device, once the front's registry copy has it."""
    return await once_admitted(
        lambda: FrontDevice(settings, device_id, token, **kw),
        f"the front to know {device_id}",
        timeout_s=15,
    )


def _body(device_id: str) -> dict[str, Any]:
    at = clock.now().replace(microsecond=0).isoformat()
    return reading(device_id) | {"timestamp": at, "event_id": str(uuid.uuid4())}


async def _stored(db: asyncpg.Connection, event_ids: list[str]) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM readings WHERE event_id = ANY($1::uuid[])", event_ids
        )
    )


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
async def test_a_device_publishes_with_its_own_credentials_and_every_puback_is_a_row(
    fleet: Fleet, front_settings: Settings, front: FrontProcess, worker: WorkerProcess,
    db: asyncpg.Connection, protocol: MQTTProtocolVersion,
) -> None:  # fmt: skip
    (device_id,) = device_ids(1)
    await fleet.enroll([device_id])
    token = fleet.tokens[device_id]
    client = await connected(front_settings, device_id, token, protocol=protocol)
    bodies = [_body(device_id) for _ in range(20)]
    try:
        for body in bodies:
            reason = await asyncio.to_thread(
                client.publish, TOPIC.format(device_id), json.dumps(body).encode()
            )
            assert reason == 0
    finally:
        client.close()
    ids = [body["event_id"] for body in bodies]
    await wait_until(lambda: _count_is(db, ids, 20), timeout_s=60, what=worker.log_tail)


async def _count_is(db: asyncpg.Connection, ids: list[str], count: int) -> bool:
    return await _stored(db, ids) == count


async def test_identities_are_bound_to_credentials(
    fleet: Fleet, front_settings: Settings, front: FrontProcess
) -> None:
    mine, other = device_ids(2)
    await fleet.enroll([mine, other])
    token = fleet.tokens[mine]
    (await connected(front_settings, other, fleet.tokens[other])).close()  # both known now
    refused = [
        FrontDevice(front_settings, mine, token, client_id="fleetstream-bridge-1"),  # the system's
        FrontDevice(front_settings, mine, token, client_id=other),  # another device's session
        FrontDevice(front_settings, mine, "not the token"),
        FrontDevice(front_settings, other, token),  # a token of another device
    ]
    for client in refused:
        reason = await asyncio.to_thread(client.connect)
        client.close()
        assert reason is not None and reason.is_failure, reason
    own = await connected(front_settings, mine, token)
    try:
        foreign = TOPIC.format(other)
        reason = await asyncio.to_thread(own.publish, foreign, json.dumps(_body(other)).encode())
        assert reason is not None and reason.value == 0x87  # not authorized
    finally:
        own.close()


async def test_a_disabled_device_is_refused_within_5_s_and_its_connection_closed(
    fleet: Fleet, front_settings: Settings, front: FrontProcess
) -> None:
    (device_id,) = device_ids(1)
    await fleet.enroll([device_id])
    client = await connected(front_settings, device_id, fleet.tokens[device_id])
    answer = await fleet.client.patch(
        f"/api/v1/admin/devices/{device_id}", json={"is_enabled": False}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    started = time.monotonic()
    await asyncio.to_thread(client.disconnected.wait, 5)
    assert client.disconnected.is_set() and time.monotonic() - started < 5
    client.close()
    again = FrontDevice(front_settings, device_id, fleet.tokens[device_id])
    reason = await asyncio.to_thread(again.connect)
    again.close()
    assert reason is not None and reason.is_failure


@pytest.mark.slow  # ~2 min: CI runs it with `make test-slow`
async def test_kill_9_of_the_front_under_load_loses_no_pubacked_reading(
    fleet: Fleet, front_settings: Settings, worker: WorkerProcess, db: asyncpg.Connection,
    tmp_path: Path,
) -> None:  # fmt: skip
    devices = device_ids(4)
    await fleet.enroll(devices)
    rng = random.Random(7)
    acked: list[str] = []
    for run in range(KILLS):
        process = FrontProcess(front_settings, tmp_path / f"front-{run}.log")
        process.start()
        try:
            await wait_until(lambda: _healthy(front_settings), timeout_s=60, what=process.log_tail)
            stop = threading.Event()
            senders = [
                asyncio.to_thread(_publish_until, front_settings, d, fleet.tokens[d], stop, acked)
                for d in devices
            ]
            running = asyncio.gather(*senders)
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # a random moment under load
            process.kill()
            stop.set()
            await running
        finally:
            process.stop()
    assert len(acked) > KILLS, "too little was PUBACKed to test anything"
    await wait_until(lambda: _count_is(db, acked, len(acked)), timeout_s=120, what=worker.log_tail)


def _publish_until(settings: Settings, device_id: str, token: str, stop: threading.Event,
                   acked: list[str]) -> None:  # fmt: skip
    client = FrontDevice(settings, device_id, token)
    if client.connect() != 0:
        return
    try:
        while not stop.is_set() and not client.disconnected.is_set():
            body = _body(device_id)
            reason = client.publish(TOPIC.format(device_id), json.dumps(body).encode(), 3.0)
            if reason is not None and reason == 0:
                acked.append(body["event_id"])
    finally:
        client.close()


async def test_devices_registered_in_a_row_all_answer_and_publish_at_once(
    fleet: Fleet, front_settings: Settings, front: FrontProcess
) -> None:
    """Registration costs the front nothing that grows with the fleet (no broker users): every
    registration in a row answers 201, and devices from the start, the middle and the end can
    publish as soon as the front's registry copy has them."""
    devices = device_ids(REGISTRATIONS, prefix="fleet")
    took: list[float] = []
    for device_id in devices:
        started = time.perf_counter()
        answer = await fleet.client.post(
            "/api/v1/admin/devices", json={"device_id": device_id}, headers=ADMIN
        )
        took.append(time.perf_counter() - started)
        assert answer.status_code == 201, answer.text
        fleet.tokens[device_id] = answer.json()["token"]
    took.sort()
    p50, p99 = took[len(took) // 2], took[len(took) * 99 // 100]
    print(f"{len(took)} registrations: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    for device_id in (devices[0], devices[len(devices) // 2], devices[-1]):
        client = await connected(front_settings, device_id, fleet.tokens[device_id])
        try:
            body = json.dumps(_body(device_id)).encode()
            assert await asyncio.to_thread(client.publish, TOPIC.format(device_id), body) == 0
        finally:
            client.close()

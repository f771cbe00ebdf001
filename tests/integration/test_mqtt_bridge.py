"""MQTT ingest through the real stack: a broker of our own (stack code), Kafka, the worker and
Postgres; devices registered through the admin API publish with their own credentials."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.app import create_app
from schemas.contract_wire import decode_dead_letter
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN
from tests.integration.kafka_tools import read_to_end
from tests.integration.mqtt_tools import (
    SEED_TOPIC,
    BridgeProcess,
    Device,
    can_connect,
    mosquitto_pub,
    start_broker,
    with_broker,
)
from tests.integration.processes import WorkerProcess
from tests.support import wait_until

PROPAGATION_S = 5.0


@pytest.fixture(scope="module")
def broker(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    yield from start_broker(stack_settings, tmp_path_factory.mktemp("mqtt-stack"))


@pytest.fixture
def mqtt_settings(pipeline: Settings, broker: Settings) -> Settings:
    return with_broker(pipeline, broker)


@pytest.fixture
async def api(mqtt_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(mqtt_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            yield client


@pytest.fixture
async def bridge(mqtt_settings: Settings, tmp_path: Path) -> AsyncIterator[BridgeProcess]:
    process = BridgeProcess(mqtt_settings, tmp_path / "bridge.log")
    await start_bridge(process)
    yield process
    process.stop()


async def start_bridge(process: BridgeProcess, *, marker: str = "broker users in step") -> None:
    """Start it and wait until it subscribed and its credential sync caught up."""
    process.start()

    async def ready() -> bool:
        log = process.log_tail(400)
        return "subscribed to" in log and marker in log

    await wait_until(
        ready, timeout_s=60, what=lambda: f"the bridge to start:\n{process.log_tail()}"
    )


async def register(api: httpx.AsyncClient, device_id: str) -> str:
    response = await api.post("/api/v1/admin/devices", json={"device_id": device_id}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def rows(db: asyncpg.Connection, ids: list[str]) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT device_id, event_id, source FROM readings WHERE device_id = ANY($1)", ids
        )
    )


async def wait_rows(
    db: asyncpg.Connection, ids: list[str], count: int, logs: list[WorkerProcess | BridgeProcess]
) -> list[asyncpg.Record]:
    async def arrived() -> bool:
        return len(await rows(db, ids)) >= count

    def what() -> str:
        return f"{count} rows of {ids}\n" + "\n".join(p.log_tail(30) for p in logs)

    await wait_until(arrived, timeout_s=60, what=what)
    return await rows(db, ids)


async def test_mosquitto_pub_with_device_credentials_on_the_seed_topic_becomes_rows(
    mqtt_settings: Settings,
    api: httpx.AsyncClient,
    bridge: BridgeProcess,
    worker: WorkerProcess,
    db: asyncpg.Connection,
) -> None:
    (device_id,) = device_ids(1)
    token = await register(api, device_id)
    topic = SEED_TOPIC.format(device_id)
    one = json.dumps(reading(device_id, 0)).encode()
    batch = json.dumps([reading(device_id, 1), reading(device_id, 2)]).encode()
    for payload in (one, batch):
        done = mosquitto_pub(mqtt_settings, device_id, token, topic, payload)
        assert done.returncode == 0 and "failed" not in done.stderr, done.stderr
    stored = await wait_rows(db, [device_id], 3, [bridge, worker])
    assert len(stored) == 3
    assert {row["source"] for row in stored} == {"mqtt"}


async def test_a_wrong_password_or_another_devices_topic_is_refused(
    mqtt_settings: Settings,
    api: httpx.AsyncClient,
    bridge: BridgeProcess,
    worker: WorkerProcess,
    db: asyncpg.Connection,
) -> None:
    mine, other = device_ids(2)
    token = await register(api, mine)
    await register(api, other)
    refused = mosquitto_pub(
        mqtt_settings, mine, "not-the-token-000", SEED_TOPIC.format(mine), b"{}"
    )
    assert refused.returncode != 0 and "Not authorized" in refused.stderr, refused.stderr
    assert not can_connect(mqtt_settings, mine, "not-the-token-000")

    device = Device(mqtt_settings, mine, token)
    connack = device.connect()
    assert connack is not None and not connack.is_failure
    try:
        forged = json.dumps(reading(other, 0)).encode()
        assert device.publish(SEED_TOPIC.format(other), forged).value == 0x87  # not authorized
        own = json.dumps(reading(mine, 1)).encode()
        assert device.publish(SEED_TOPIC.format(mine), own).value == 0
    finally:
        device.close()
    # The device's own reading came after the forged one on the same connection: once it is a
    # row, the forged one would be too had the broker let it through.
    await wait_rows(db, [mine], 1, [bridge, worker])
    assert await rows(db, [other]) == []


async def test_disable_enable_and_rotate_through_the_admin_api_reach_the_broker_in_5s(
    mqtt_settings: Settings, api: httpx.AsyncClient, bridge: BridgeProcess
) -> None:
    (device_id,) = device_ids(1)
    token = await register(api, device_id)
    assert can_connect(mqtt_settings, device_id, token)
    connected = Device(mqtt_settings, device_id, token)
    connected.connect()
    path = f"/api/v1/admin/devices/{device_id}"
    try:
        response = await api.patch(path, json={"is_enabled": False}, headers=ADMIN)
        assert response.status_code == 200, response.text

        async def refused() -> bool:
            return not can_connect(mqtt_settings, device_id, token)

        await wait_until(refused, timeout_s=PROPAGATION_S, what="the disabled device refused")
        assert connected.disconnected.wait(PROPAGATION_S), "a connected disabled device stays"
    finally:
        connected.close()

    response = await api.patch(path, json={"is_enabled": True}, headers=ADMIN)
    assert response.status_code == 200, response.text

    async def accepted() -> bool:
        return can_connect(mqtt_settings, device_id, token)

    await wait_until(accepted, timeout_s=PROPAGATION_S, what="the enabled device accepted")

    response = await api.post(f"{path}/rotate-token", headers=ADMIN)
    assert response.status_code == 200, response.text
    new_token = response.json()["token"]
    assert can_connect(mqtt_settings, device_id, new_token)
    assert not can_connect(mqtt_settings, device_id, token)


async def test_messages_published_while_the_bridge_is_stopped_arrive_after_it_restarts(
    mqtt_settings: Settings,
    api: httpx.AsyncClient,
    worker: WorkerProcess,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    (device_id,) = device_ids(1)
    token = await register(api, device_id)
    first = BridgeProcess(mqtt_settings, tmp_path / "bridge-1.log")
    await start_bridge(first)  # makes the session and its subscriptions
    first.stop()
    assert not first.running

    device = Device(mqtt_settings, device_id, token)
    device.connect()
    try:
        for n in range(50):
            payload = json.dumps(reading(device_id, n)).encode()
            assert device.publish(SEED_TOPIC.format(device_id), payload).value == 0
    finally:
        device.close()

    second = BridgeProcess(mqtt_settings, tmp_path / "bridge-2.log")
    await start_bridge(second)
    try:
        stored = await wait_rows(db, [device_id], 50, [second, worker])
        assert len(stored) == 50
    finally:
        second.stop()


async def test_malformed_payloads_are_dead_letters_with_reason_and_original_bytes(
    mqtt_settings: Settings,
    api: httpx.AsyncClient,
    bridge: BridgeProcess,
    worker: WorkerProcess,
    db: asyncpg.Connection,
) -> None:
    device_id, someone_else = device_ids(2)
    token = await register(api, device_id)
    topic = SEED_TOPIC.format(device_id)
    bad = {
        b'{"device_id": "' + device_id.encode() + b'", "sensors": ': "JSON is malformed",
        json.dumps(
            reading(device_id, 0, sensors={"mq134": {"gas_concentration": -5}})
        ).encode(): "sensors.mq134.gas_concentration",
        json.dumps(reading(someone_else, 0)).encode(): "is not the topic's device",
    }
    for payload in bad:
        done = mosquitto_pub(mqtt_settings, device_id, token, topic, payload)
        assert done.returncode == 0, done.stderr
    good = mosquitto_pub(
        mqtt_settings, device_id, token, topic, json.dumps(reading(device_id, 7)).encode()
    )
    assert good.returncode == 0, good.stderr
    await wait_rows(db, [device_id], 1, [bridge, worker])  # nothing stalled behind them

    bootstrap = mqtt_settings.kafka.bootstrap_servers
    letters = [
        decode_dead_letter(v) for v in read_to_end(bootstrap, mqtt_settings.topics.deadletter)
    ]
    mine = {letter.original: letter for letter in letters if letter.stage == "mqtt"}
    assert set(mine) == set(bad)
    for payload, reason in bad.items():
        letter = mine[payload]
        assert reason in letter.reason, letter.reason
        assert letter.source_topic == f"mqtt:{topic}"
        assert letter.key == device_id
    assert len(await rows(db, [device_id, someone_else])) == 1

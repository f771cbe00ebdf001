"""Disruptive: Kafka stopped while devices publish over MQTT, the bridge killed with SIGKILL
meanwhile; once both are back, every reading is a row (the lead runs these)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.app import create_app
from cli.stack import manager
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN
from tests.integration.mqtt_tools import (
    SEED_TOPIC,
    BridgeProcess,
    Device,
    start_broker,
    with_broker,
)
from tests.integration.processes import WorkerProcess
from tests.integration.test_mqtt_bridge import start_bridge, wait_rows
from tests.support import wait_until

MESSAGES = 200


@pytest.fixture(scope="module")
def broker(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    yield from start_broker(stack_settings, tmp_path_factory.mktemp("mqtt-stack"))


@pytest.mark.disruptive
async def test_bridge_killed_while_kafka_is_down_loses_nothing(
    pipeline: Settings,
    broker: Settings,
    stack_settings: Settings,
    worker_factory: list[WorkerProcess],
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    settings = with_broker(pipeline, broker)
    (device_id,) = device_ids(1)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as api:
            response = await api.post(
                "/api/v1/admin/devices", json={"device_id": device_id}, headers=ADMIN
            )
    assert response.status_code == 201, response.text
    token = response.json()["token"]

    first = BridgeProcess(settings, tmp_path / "bridge-1.log")
    await start_bridge(first)
    manager.down(stack_settings, services=["kafka"], progress=print)
    try:
        device = Device(settings, device_id, token)
        device.connect()
        try:
            for n in range(MESSAGES):
                payload = json.dumps(reading(device_id, n)).encode()
                assert device.publish(SEED_TOPIC.format(device_id), payload).value == 0
        finally:
            device.close()

        async def holding() -> bool:
            return "Kafka did not take" in first.log_tail(200)

        await wait_until(
            holding, timeout_s=60, what=lambda: f"the bridge to hold:\n{first.log_tail()}"
        )
        first.kill()  # SIGKILL with every message unacked
    finally:
        manager.up(stack_settings, services=["kafka"], progress=print)

    worker = WorkerProcess(pipeline, tmp_path / "worker.log")  # started after the outage
    worker_factory.append(worker)
    worker.start()
    second = BridgeProcess(settings, tmp_path / "bridge-2.log")
    await start_bridge(second)
    try:
        stored = await wait_rows(db, [device_id], MESSAGES, [second, worker])
        assert len(stored) == MESSAGES
        assert len({row["event_id"] for row in stored}) == MESSAGES
    finally:
        second.stop()

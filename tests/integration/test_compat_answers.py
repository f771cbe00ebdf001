"""The seeds' documented answers through a real API process (`fleetstream api`) and worker on
the real stack, with ``FLEET_COMPAT__SEEDS`` set, and the canonical answers with it unset
(docs/compat.md). The requests are the seeds' own: seed 004's and 003's ``GET /health``, seed
002's ``readinessProbe`` (``GET /ready``) and its WebSocket test (``ws://localhost:3001``, a
``{"type": "subscribe"}``, a reading of ``test-device`` with ``sensors.pir.motion_detected``),
seed 001's ``/latest``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from schemas.settings import DEV_ADMIN_TOKEN, CompatSettings, Settings
from tests.integration.fleet import Fleet
from tests.integration.processes import ApiProcess, WorkerProcess
from tests.support import free_port, wait_until

EVERY_SEED = "000,001,002,003,004"


@contextlib.asynccontextmanager
async def served(
    pipeline: Settings, seeds: str, log: Path, **compat: Any
) -> AsyncIterator[Settings]:
    """A `fleetstream api` process with ``seeds``' profiles on (and the other ``compat``
    settings given), until it is ready."""
    settings = pipeline.model_copy(
        update={
            "api": pipeline.api.model_copy(update={"port": free_port()}),
            "compat": CompatSettings(seeds=seeds, ws_port=free_port(), **compat),
        }
    )
    process = ApiProcess(settings, log)
    process.start()
    base = f"http://127.0.0.1:{settings.api.port}"

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                return (await client.get("/health/ready")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_until(ready, timeout_s=90, what=lambda: f"the API\n{process.log_tail()}")
        yield settings
    finally:
        process.stop()


def base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.api.port}"


def seed_ws_url(settings: Settings) -> str:
    """Seed 002's ``ws://localhost:3001``, at the port the test gave it."""
    return f"ws://127.0.0.1:{settings.compat.ws_port}"


async def test_health_and_ready_answer_as_seeds_002_003_004_document(
    pipeline: Settings, tmp_path: Path
) -> None:
    async with (
        served(pipeline, EVERY_SEED, tmp_path / "api.log") as settings,
        httpx.AsyncClient(base_url=base_url(settings)) as client,
    ):
        health = await client.get("/health")  # seed 004's and 003's request
        assert health.status_code == 200
        answer = health.json()
        # seed 004: {"status": "ok", "db": true, "storage_writable": true, "time": "..."};
        # seed 003's database, storage and Redis checks in the same document
        assert list(answer) == ["status", "db", "storage_writable", "redis", "time"]
        assert answer["status"] == "ok", answer
        assert answer["db"] is answer["storage_writable"] is answer["redis"] is True
        assert datetime.fromisoformat(answer["time"]).tzinfo is not None
        ready = await client.get("/ready")  # seed 002's readinessProbe: httpGet /ready
        assert ready.status_code == 200
        assert ready.json()["status"] in ("ok", "degraded")  # degraded: ready, with a note


async def test_the_canonical_answers_with_no_profile_on(pipeline: Settings, tmp_path: Path) -> None:
    async with (
        served(pipeline, "", tmp_path / "api.log") as settings,
        httpx.AsyncClient(base_url=base_url(settings)) as client,
    ):
        health = await client.get("/health")
        assert health.status_code == 200 and set(health.json()) == {"status", "time"}
        assert (await client.get("/ready")).status_code == 404
        with pytest.raises(OSError):  # nobody listens on seed 002's port
            async with connect(seed_ws_url(settings), open_timeout=10):
                pass


async def subscribe(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "subscribe"}))  # the seed's subscribe message, as is
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer["type"] == "subscribed", answer


async def first_sensor_data(ws: ClientConnection, device_id: str) -> dict[str, Any]:
    """The seed's wait: the first ``sensor-data`` message (of this test's device)."""
    async for frame in ws:
        message = json.loads(frame)
        if message["type"] == "sensor-data" and message["data"]["device_id"] == device_id:
            return dict(message["data"])
    raise AssertionError("the WebSocket closed before the reading came")


async def test_seed002s_websocket_test_on_its_own_port(
    pipeline: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    async with (
        served(pipeline, "002", tmp_path / "api.log") as settings,
        httpx.AsyncClient(base_url=base_url(settings)) as client,
    ):
        # The seed's exact connection carries no credentials: ours are kept (docs/compat.md).
        async with connect(seed_ws_url(settings)) as anonymous:
            with pytest.raises(ConnectionClosed) as closed:  # closed at once, or at the send
                await anonymous.send(json.dumps({"type": "subscribe"}))
                await asyncio.wait_for(anonymous.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        async with httpx.AsyncClient() as plain:  # the port serves the WebSocket only
            port = settings.compat.ws_port
            assert (await plain.get(f"http://127.0.0.1:{port}/health")).status_code == 404

        fleet = Fleet(client)
        device = f"test-device-{uuid.uuid4().hex[:8]}"
        await fleet.enroll([device], metadata={"location": "Lab 2"})
        async with connect(f"{seed_ws_url(settings)}?token={DEV_ADMIN_TOKEN}") as ws:
            await subscribe(ws)
            waiting = asyncio.create_task(first_sensor_data(ws, device))
            sent_at = datetime.now(UTC).isoformat()
            body = {  # the seed's reading (it publishes it over MQTT; its HTTP route here)
                "device_id": device,
                "timestamp": sent_at,
                "sensors": {"pir": {"motion_detected": True}},
            }
            posted = await fleet.post(body, path="/api/v1/sensor-data")
            assert posted.status_code == 202, posted.text
            try:
                message = await asyncio.wait_for(waiting, 90)
            except TimeoutError:
                raise AssertionError(f"no sensor-data\n{worker.log_tail()}") from None
    assert message["device_id"] == device  # expect(message.device_id).toBe('test-device')
    assert message["sensors"]["pir"]["motion_detected"] is True
    assert datetime.fromisoformat(message["timestamp"]) == datetime.fromisoformat(sent_at)
    assert message["device_metadata"]["location"] == "Lab 2"
    assert "ts" not in message


async def test_latest_finds_a_seed001_reading_by_the_id_the_client_wrote(
    pipeline: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    """With no profile on: the same id finds the same readings for everyone."""
    run = uuid.uuid4().hex[:8]
    stored_id, written_id = f"PUMP-{run.upper()}-001", f"pump-{run}-001"
    async with (
        served(pipeline, "", tmp_path / "api.log") as settings,
        httpx.AsyncClient(base_url=base_url(settings)) as client,
    ):
        fleet = Fleet(client)
        await fleet.enroll([stored_id])
        reading = {"equipment_id": written_id, "temperature": 71.5}  # no vibration, pressure
        headers = fleet.headers(stored_id)
        posted = await client.post("/api/v1/sensors/ingest", json=reading, headers=headers)
        assert posted.status_code == 201, posted.text
        assert posted.json()["equipment_id"] == stored_id

        async def found() -> bool:
            latest = await client.get(f"/api/v1/sensors/{written_id}/latest", headers=headers)
            assert latest.status_code == 200, latest.text
            return bool(latest.json()["count"] == 1)

        await wait_until(found, timeout_s=90, what=lambda: f"the reading\n{worker.log_tail()}")
        latest = await client.get(f"/api/v1/sensors/{written_id}/latest", headers=headers)
    answer = latest.json()
    assert answer["equipment_id"] == stored_id
    assert answer["readings"][0]["temperature"] == 71.5
    assert "vibration" not in answer["readings"][0]


async def test_the_api_does_not_start_when_seed002s_port_is_taken(
    pipeline: Settings, tmp_path: Path
) -> None:
    """A seed 002 deployment whose clients would find nobody on 3001 fails at start-up."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = pipeline.model_copy(
            update={
                "api": pipeline.api.model_copy(update={"port": free_port()}),
                "compat": CompatSettings(seeds="002", ws_port=taken.getsockname()[1]),
            }
        )
        process = ApiProcess(settings, tmp_path / "api.log")
        process.start()
        try:

            async def exited() -> bool:
                return not process.running

            await wait_until(exited, timeout_s=90, what=lambda: f"exit\n{process.log_tail()}")
        finally:
            process.stop()
    assert "seed 002's WebSocket port could not be served" in process.log_tail(200)

"""The seeds' answers through a real API process (`fleetstream api`) and worker on the real
stack beyond the seeds' own request examples (those, with ``/health``, ``/ready`` and seed 002's
WebSocket test, are tests/integration/test_seed_examples.py): seed 002's port serves only its
WebSocket and must be free at start-up; seed 001's ``/latest`` finds a reading by the id the
client wrote (docs/compat.md)."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from schemas.settings import CompatSettings, Settings
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


async def test_seed002s_port_serves_the_websocket_only(pipeline: Settings, tmp_path: Path) -> None:
    async with (
        served(pipeline, "002", tmp_path / "api.log") as settings,
        httpx.AsyncClient() as plain,
    ):
        port = settings.compat.ws_port
        assert (await plain.get(f"http://127.0.0.1:{port}/health")).status_code == 404


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

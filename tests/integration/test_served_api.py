"""The API as `fleetstream api` serves it: uvicorn on loopback, a real HTTP round trip."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.processes import ApiProcess, WorkerProcess
from tests.support import free_port, wait_until


async def test_served_api_accepts_a_reading_that_reaches_postgres(
    pipeline: Settings, worker: WorkerProcess, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = pipeline.model_copy(
        update={"api": pipeline.api.model_copy(update={"port": free_port()})}
    )
    api = ApiProcess(settings, tmp_path / "api.log")
    api.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/health/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout_s=60, what=lambda: f"the API\n{api.log_tail()}")
            device = device_ids(1)[0]
            fleet = Fleet(client)
            await fleet.enroll([device])
            response = await fleet.post(reading(device, 1))
            assert response.status_code == 202, response.text
            (event_id,) = response.json()["event_ids"]
            docs = await client.get("/openapi.json")
            assert "/v1/readings" in docs.json()["paths"]
    finally:
        api.stop()

    async def stored() -> bool:
        found = await db.fetchval(
            "SELECT device_id FROM readings WHERE event_id = $1::uuid", event_id
        )
        return bool(found == device)

    await wait_until(stored, timeout_s=90, what=lambda: f"the row\n{worker.log_tail()}")

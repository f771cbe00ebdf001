"""A worker killed with SIGKILL mid-stream loses nothing and duplicates nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx

from streams.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.processes import WorkerProcess
from tests.support import wait_until

BATCHES = 60
BATCH_SIZE = 50


async def test_sigkilled_worker_restarts_and_every_reading_is_stored_once(
    api_client: httpx.AsyncClient,
    pipeline: Settings,
    worker_factory: list[WorkerProcess],
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    devices = device_ids(8)
    accepted: list[str] = []
    first = WorkerProcess(pipeline, tmp_path / "worker-1.log")
    worker_factory.append(first)
    first.start()

    async def stored() -> int:
        count = await db.fetchval(
            "SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices
        )
        return int(count)

    async def post_batches() -> None:
        for b in range(BATCHES):
            batch = [reading(devices[n % 8], b * BATCH_SIZE + n) for n in range(BATCH_SIZE)]
            response = await api_client.post("/v1/readings", json=batch)
            assert response.status_code == 202, response.text
            accepted.extend(response.json()["event_ids"])
            await asyncio.sleep(0.05)  # pace the producer so the kill lands mid-stream

    posting = asyncio.create_task(post_batches())

    async def some_stored() -> bool:
        return await stored() > 0

    await wait_until(some_stored, timeout_s=90, what=lambda: f"first rows\n{first.log_tail()}")
    first.kill()
    killed_at = await stored()

    second = WorkerProcess(pipeline, tmp_path / "worker-2.log")
    worker_factory.append(second)
    second.start()
    await posting
    total = BATCHES * BATCH_SIZE
    assert len(accepted) == total
    assert killed_at < total, "the kill landed after the stream ended; the test proves nothing"

    async def all_stored() -> bool:
        return await stored() >= total

    await wait_until(all_stored, timeout_s=120, what=lambda: f"all rows\n{second.log_tail()}")
    rows = await db.fetch(
        "SELECT event_id::text AS id FROM readings WHERE device_id = ANY($1)", devices
    )
    assert sorted(row["id"] for row in rows) == sorted(accepted)

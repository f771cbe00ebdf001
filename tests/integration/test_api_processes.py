"""``FLEET_API__PROCESSES``: several API processes share the port, and ``/metrics`` answered
by any of them counts the requests all of them served."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.processes import ApiProcess
from tests.support import free_port, wait_until

PROCESSES = 2
REQUESTS = 300
CLOSE = {"Connection": "close"}  # a new connection each time: the kernel picks the process


@pytest.fixture
def api(pipeline: Settings, tmp_path: Path) -> Iterator[tuple[ApiProcess, str]]:
    settings = pipeline.model_copy(
        update={
            "environment": "development",
            "api": pipeline.api.model_copy(update={"port": free_port(), "processes": PROCESSES}),
            "auth": pipeline.auth.model_copy(update={"allow_unauthenticated_ingest": True}),
        }
    )
    with ApiProcess(settings, tmp_path / "api.log") as process:
        yield process, f"http://127.0.0.1:{settings.api.port}"


def _workers_of(pid: int) -> int:
    """Processes uvicorn started for ``pid`` (multiprocessing's spawned children)."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == pid and b"spawn_main" in command:
            count += 1
    return count


def _accepted(metrics: str) -> float:
    series = 'fleet_api_requests_total{method="POST",route="/v1/readings",status="202"} '
    line = next((ln for ln in metrics.splitlines() if ln.startswith(series)), None)
    return 0.0 if line is None else float(line.removeprefix(series))


async def test_processes_share_the_port_and_the_metrics_count_them_all(
    api: tuple[ApiProcess, str],
) -> None:
    process, base = api
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=CLOSE) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/health/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, timeout_s=90, what=lambda: process.log_tail())
        assert process.pid is not None
        assert _workers_of(process.pid) == PROCESSES

        devices = device_ids(30, prefix="procs")
        answers = await asyncio.gather(
            *(
                client.post("/v1/readings", json=reading(devices[n % 30], n))
                for n in range(REQUESTS)
            )
        )
        assert [a.status_code for a in answers] == [202] * REQUESTS

        scrapes = [_accepted((await client.get("/metrics")).text) for _ in range(6)]
    assert scrapes == [REQUESTS] * 6, process.log_tail()

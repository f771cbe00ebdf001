"""`fleetstream run` (what `make run` starts): API, worker and MQTT front as its children, all
stopped when it is; a child that exits is restarted, and the stack's services are not its
concern even when it started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from cli.stack import manager
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.processes import PROJECT_ROOT
from tests.support import free_port, settings_env, wait_until


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc: no tool needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_run(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "run"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **settings_env(settings)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_settings(pipeline: Settings) -> Settings:
    """``pipeline`` with an API port and a bridge session of its own (gone when it
    disconnects)."""
    run_id = uuid.uuid4().hex[:10]
    mqtt = pipeline.mqtt.model_copy(
        update={"client_id": f"test-run-{run_id}", "share_group": run_id, "session_expiry_s": 0}
    )
    api = pipeline.api.model_copy(update={"port": free_port()})
    front = pipeline.mqtt_front.model_copy(update={"port": free_port(), "health_port": free_port()})
    worker = pipeline.worker.model_copy(update={"web_enabled": True, "web_port": free_port()})
    return pipeline.model_copy(
        update={"api": api, "mqtt": mqtt, "mqtt_front": front, "worker": worker}
    )


async def api_ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


async def front_shown(settings: Settings) -> bool:
    """Whether the worker's overview lists the run's MQTT front, answering from its pid."""
    url = f"http://127.0.0.1:{settings.worker.web_port}/ops/api/overview"
    try:
        async with httpx.AsyncClient(headers=ADMIN, timeout=10) as client:
            overview = (await client.get(url)).json()
    except (httpx.TransportError, ValueError):
        return False
    front_url = f"http://127.0.0.1:{settings.mqtt_front.health_port}"
    fronts = overview.get("mqtt_fronts", []) if isinstance(overview, dict) else []
    return any(row["url"] == front_url and row["status"] == "ok" for row in fronts)


async def test_sigterm_stops_api_worker_and_front(pipeline: Settings, tmp_path: Path) -> None:
    """The worker's overview shows the front it runs beside, and SIGTERM stops all three."""
    settings = run_settings(pipeline)
    api = settings.api
    log = tmp_path / "run.log"
    proc = start_run(settings, log)
    children: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}") as client:

            async def ready() -> bool:
                return await api_ready(client) and len(children_of(proc.pid)) == 3

            await wait_until(ready, timeout_s=120, what=lambda: log.read_text()[-3000:])
        await wait_until(
            lambda: front_shown(settings), timeout_s=120, what=lambda: log.read_text()[-3000:]
        )
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert [pid for pid in children if alive(pid)] == []
        assert "stopping API, worker and MQTT front" in log.read_text()
    finally:
        for pid in [proc.pid, *children]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _worker_pid(run_pid: int) -> int | None:
    found = [pid for pid in children_of(run_pid) if "cli.main worker" in _cmdline(pid)]
    return found[0] if found else None


@pytest.mark.disruptive
async def test_run_outlives_a_stack_service_it_started_and_restarts_a_killed_worker(
    fleet: Fleet, pipeline: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    (device_id,) = device_ids(1)
    await fleet.enroll([device_id])
    settings = run_settings(pipeline)
    api = settings.api
    manager.down(stack_settings, services=["postgres"], progress=print)
    log = tmp_path / "run.log"
    proc = start_run(settings, log)  # it starts Postgres again: a child of its own process
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}") as client:

            async def serving() -> bool:
                return await api_ready(client) and _worker_pid(proc.pid) is not None

            await wait_until(serving, timeout_s=180, what=lambda: log.read_text()[-3000:])
            manager.down(stack_settings, services=["postgres"], progress=print)  # the outage
            first_worker = _worker_pid(proc.pid)
            assert first_worker is not None
            os.kill(first_worker, signal.SIGKILL)

            async def worker_restarted() -> bool:
                return _worker_pid(proc.pid) not in (None, first_worker)

            await wait_until(worker_restarted, timeout_s=60, what=lambda: log.read_text()[-3000:])
            assert proc.poll() is None, log.read_text()[-3000:]
            body = reading(device_id, 1)
            answer = await client.post("/v1/readings", json=body, headers=fleet.headers(device_id))
            assert answer.status_code == 202, answer.text  # the API kept accepting
            assert "worker exited (-9)" in log.read_text()
    finally:
        manager.up(stack_settings, services=["postgres"], progress=print)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

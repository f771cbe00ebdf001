"""`fleetstream run` (what `make run` starts): API, worker and bridge as its children, all
stopped when it is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from schemas.settings import Settings
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


async def test_sigterm_stops_api_worker_and_bridge(pipeline: Settings, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:10]
    mqtt = pipeline.mqtt.model_copy(  # a bridge session of its own, gone when it disconnects
        update={"client_id": f"test-run-{run_id}", "share_group": run_id, "session_expiry_s": 0}
    )
    api = pipeline.api.model_copy(update={"port": free_port()})
    settings = pipeline.model_copy(update={"api": api, "mqtt": mqtt})
    log = tmp_path / "run.log"
    proc = start_run(settings, log)
    children: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}") as client:

            async def ready() -> bool:
                try:
                    answer = await client.get("/health/ready")
                except httpx.TransportError:
                    return False
                return answer.status_code == 200 and len(children_of(proc.pid)) == 3

            await wait_until(ready, timeout_s=120, what=lambda: log.read_text()[-3000:])
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert [pid for pid in children if alive(pid)] == []
        assert "stopping API, worker and bridge" in log.read_text()
    finally:
        for pid in [proc.pid, *children]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()

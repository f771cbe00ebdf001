"""``fleetstream simulate`` against a real ``fleetstream run`` (API, worker and MQTT front as its
children, on free ports and fresh topics): a fleet of 2,000 devices over HTTP and MQTT, some of
them misbehaving, bursting or going offline; every reading the edges acked is in Postgres."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cli.simulator.plan import Plan
from cli.simulator.progress import progress_line
from cli.simulator.simulation import Simulation
from cli.simulator.tally import Summary
from connectors.postgres.pool import connect
from schemas.settings import Settings
from tests.integration.test_run_command import alive, api_ready, children_of, start_run
from tests.support import free_port, wait_until

REFUSALS = {"http 401", "http 422", "puback 0x99", "connack 0x86"}
"""What misbehaving devices get: a wrong token, a malformed or out-of-range reading."""


@pytest.fixture
async def database(pipeline: Settings) -> AsyncIterator[Settings]:
    """``pipeline`` on a fresh database of its own (``fleetstream run`` migrates it), dropped
    afterwards.

    ``fleetstream run`` republishes every device of its database to the (fresh) registry topic
    as it starts; the shared test database holds the devices of every other test (100,000 and
    more from the bulk tests), too many to republish at each start."""
    name = f"fleetstream_sim_{uuid.uuid4().hex[:8]}"
    await _admin(pipeline, f'CREATE DATABASE "{name}"')
    try:
        yield pipeline.model_copy(
            update={"postgres": pipeline.postgres.model_copy(update={"database": name})}
        )
    finally:
        await _admin(pipeline, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(settings: Settings, statement: str) -> None:
    """One statement on a connection of its own (the stack's Postgres may have restarted
    while the test ran)."""
    conn = await connect(settings.postgres)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def served(database: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """``fleetstream run`` on free ports; its settings once API and MQTT front answer."""
    run_id = uuid.uuid4().hex[:10]
    pipeline = database
    settings = pipeline.model_copy(
        update={
            "api": pipeline.api.model_copy(update={"port": free_port()}),
            "mqtt_front": pipeline.mqtt_front.model_copy(
                update={"port": free_port(), "health_port": free_port()}
            ),
            "mqtt": pipeline.mqtt.model_copy(
                update={
                    "client_id": f"test-sim-{run_id}",
                    "share_group": run_id,
                    "session_expiry_s": 0,
                }
            ),
        }
    )
    log = tmp_path / "run.log"
    proc = start_run(settings, log)
    try:
        await wait_until(
            lambda: _serving(settings), timeout_s=180, what=lambda: log.read_text()[-3000:]
        )
        yield settings
    finally:
        _stop(proc)


async def _serving(settings: Settings) -> bool:
    front = f"http://127.0.0.1:{settings.mqtt_front.health_port}/health"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api.port}") as client:
        if not await api_ready(client):
            return False
        try:
            return (await client.get(front)).status_code == 200
        except httpx.TransportError:
            return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    children = children_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in children:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def _with_progress(simulation: Simulation) -> Summary:
    """Run it, printing the progress line every few seconds (a slow stage shows in the log)."""
    running = asyncio.create_task(simulation.arun())
    started = time.monotonic()
    while not running.done():
        await asyncio.wait([running], timeout=5)
        line = progress_line(simulation.stage, simulation.tally, time.monotonic() - started, 0)
        print(line, flush=True)
    summary = running.result()
    print(summary.as_dict(), flush=True)
    return summary


async def test_every_acked_reading_of_a_mixed_fleet_is_stored(
    served: Settings, tmp_path: Path
) -> None:
    plan = Plan(
        devices=2_000,
        duration_s=20.0,
        rate_per_s=0.25,
        seed=11,
        prefix=f"it{uuid.uuid4().hex[:6]}",
        mqtt_share=0.5,
        bad_share=0.03,
        offline_share=0.05,
        offline_s=5.0,
        burst_share=0.02,
        burst_size=10,
        state_dir=tmp_path / "state",
        check_timeout_s=180.0,
        registry_wait_s=120.0,
    )
    simulation = Simulation(served, plan)
    summary = await _with_progress(simulation)
    assert (summary.http_devices, summary.mqtt_devices) == (1_000, 1_000)
    assert summary.sent > 8_000, summary
    assert summary.stored == summary.acked and summary.missing == 0, summary
    assert summary.ok
    # Misbehaving devices are refused, every other reading is acked.
    assert summary.bad_sent > 0 and summary.bad_acked == 0, summary
    assert summary.failed == summary.bad_sent, summary
    assert set(summary.errors) >= REFUSALS, summary
    assert summary.acked == summary.sent - summary.bad_sent


async def test_a_rerun_with_the_same_seed_finds_its_devices_and_knows_their_tokens(
    served: Settings, tmp_path: Path
) -> None:
    plan = Plan(
        devices=50,
        duration_s=None,
        readings=200,
        rate_per_s=5.0,
        seed=12,
        prefix=f"it{uuid.uuid4().hex[:6]}",
        state_dir=tmp_path / "state",
        check_timeout_s=120.0,
        registry_wait_s=120.0,
    )
    first = await _with_progress(Simulation(served, plan))
    again = await _with_progress(Simulation(served, plan))  # the import answers all 50 as existing
    for summary in (first, again):
        assert (summary.sent, summary.acked, summary.stored) == (200, 200, 200), summary
    assert first.run_id != again.run_id  # fresh event ids: the check counts this run's rows
    token_file = tmp_path / "state" / f"devices-{plan.prefix}-12.json"
    assert token_file.stat().st_mode & 0o077 == 0

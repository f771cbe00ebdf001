"""The worker's status view answers 503 "recovering" while the table recovers, then the state.

A worker that starts on a long status changelog (written here, as a worker with a large fleet
leaves it) restores it before it serves; a query in that window must get 503 and
``{"status": "recovering"}``, never a 404 "unknown" or a default state, and once recovered the
state that the changelog holds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from confluent_kafka import Producer

from connectors.kafka.admin import ensure_topics
from connectors.kafka.partitioner import partition_for
from schemas.settings import Settings
from schemas.status import DeviceState, encode
from streams.topology import changelog_specs
from streams.web.trust import RECOVERING
from tests.integration.fleet import ADMIN
from tests.integration.processes import WorkerProcess
from tests.integration.stream_core import core_settings
from tests.support import free_port

ROWS = 150_000
"""Status rows in the changelog: enough that restoring them takes seconds on our machine."""
TIMEOUT_S = 180.0
POLL_S = 0.05


def _fill_changelog(settings: Settings, rows: int) -> str:
    """``rows`` device states on the status table's changelog; returns one device's id."""
    name = f"{settings.worker.app_id}-device-status-changelog"
    ensure_topics(settings.kafka.bootstrap_servers, changelog_specs([name], settings))
    producer = Producer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 50, "acks": "all"}
    )
    seen = datetime(2026, 12, 1, tzinfo=UTC)
    partitions = settings.kafka.partitions
    for n in range(rows):
        device_id = f"recovering-{n:06d}"
        state = DeviceState(
            device_id=device_id, first_seen=seen, last_seen=seen + timedelta(seconds=n),
            last_ts=seen, last_event_id=f"e{n}", count=n + 1, online=True, seq=1,
        )  # fmt: skip
        record = (name, encode(state), device_id.encode(), partition_for(device_id, partitions))
        while True:
            try:
                producer.produce(record[0], record[1], record[2], partition=record[3])
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
    assert producer.flush(60) == 0
    return f"recovering-{rows - 1:06d}"


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


async def test_the_status_view_says_recovering_until_the_table_is_back(
    pipeline: Settings, tmp_path: Path
) -> None:
    web = pipeline.worker.model_copy(update={"web_enabled": True, "web_port": free_port()})
    settings = core_settings(pipeline).model_copy(update={"worker": web})
    device_id = _fill_changelog(settings, ROWS)
    url = f"http://127.0.0.1:{web.web_port}/devices/{device_id}/status/"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    answers: list[tuple[int, object]] = []
    try:
        async with httpx.AsyncClient(headers=ADMIN, timeout=10) as client:
            deadline = asyncio.get_running_loop().time() + TIMEOUT_S
            while not answers or answers[-1][0] != 200:
                assert asyncio.get_running_loop().time() < deadline, (
                    answers[-5:],
                    worker.log_tail(),
                )
                try:
                    response = await client.get(url)
                except httpx.TransportError:  # the web server is not listening yet
                    await asyncio.sleep(POLL_S)
                    continue
                answers.append((response.status_code, _body(response)))
                await asyncio.sleep(POLL_S)
    finally:
        worker.stop()
    codes = {code for code, _ in answers}
    assert codes <= {503, 200}, answers  # never a 404 "unknown" (or a 500) while restoring
    recovering = [body for code, body in answers if code == 503]
    assert recovering, (answers[:3], worker.log_tail())
    # The view's own answer while the table restores, or the router's before the worker owns
    # the key's partition: both say so.
    assert all(body in ({"status": "recovering"}, {"error": RECOVERING}) for body in recovering)
    assert {"status": "recovering"} in recovering, recovering[-3:]
    final = answers[-1][1]
    assert isinstance(final, dict)
    assert (final["device_id"], final["count"], final["seq"]) == (device_id, ROWS, 1)

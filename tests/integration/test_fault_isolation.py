"""One device, one value or one refusing service stops nothing and loses nothing.

Each test repeats a case that stopped the whole pipeline or lost readings (see
docs/operations.md, "Failure model"): extreme values that overflowed a rollup, a device reusing
another's event id, flows aimed at the system's own services, Redis refusing writes.
"""

from __future__ import annotations

import math
import uuid

import asyncpg
import httpx
import pytest

from schemas.settings import DEV_ADMIN_TOKEN, Settings
from tests import clock
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.processes import WorkerProcess
from tests.integration.stream_core import core_settings, redis_client, status_hash
from tests.support import wait_until

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
TIMEOUT_S = 90.0


@pytest.fixture
def pipeline(pipeline: Settings) -> Settings:
    return core_settings(pipeline, rollup_publish_interval_s=1.0)


def _equipment(device_id: str, n: int, power_kw: float) -> dict[str, object]:
    """A reading of now (an old one is late for every rollup window)."""
    at = clock.now().replace(microsecond=0)
    body = reading(device_id, n, {"equipment": {"power_kw": power_kw}})
    return body | {"timestamp": at.isoformat(), "event_id": str(uuid.uuid4())}


async def test_sums_past_the_largest_float_neither_crash_the_worker_nor_lose_the_rollup(
    fleet: Fleet, pipeline: Settings, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    (device_id,) = device_ids(1)
    await fleet.enroll([device_id])
    for n in (0, 1):
        answer = await fleet.post(_equipment(device_id, n, 1.7e308))
        assert answer.status_code == 202, answer.text

    async def rollup(count: int) -> bool:
        row = await db.fetchrow(
            "SELECT count, sum FROM readings_1m WHERE device_id = $1 AND field = $2",
            device_id,
            "equipment.power_kw",
        )
        return row is not None and row["count"] == count

    await wait_until(lambda: rollup(2), timeout_s=TIMEOUT_S, what=worker.log_tail)
    # the row is written and read back: the third reading loads it (a null sum crashed here)
    answer = await fleet.post(_equipment(device_id, 2, 1.7e308))
    assert answer.status_code == 202, answer.text
    await wait_until(lambda: rollup(3), timeout_s=TIMEOUT_S, what=worker.log_tail)
    total = await db.fetchval(
        "SELECT sum FROM readings_1m WHERE device_id = $1 AND field = $2",
        device_id,
        "equipment.power_kw",
    )
    assert math.isfinite(total)
    assert worker.running, worker.log_tail()
    rows = await db.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", device_id)
    assert rows == 3


async def test_a_device_reusing_another_devices_event_id_and_time_cannot_suppress_it(
    fleet: Fleet, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    first, second = device_ids(2)
    await fleet.enroll([first, second])
    event_id, at = str(uuid.uuid4()), clock.now().replace(microsecond=0).isoformat()
    for device_id in (first, second):
        body = reading(device_id) | {"event_id": event_id, "timestamp": at}
        answer = await fleet.post(body)
        assert answer.status_code == 202, answer.text

    async def both_stored() -> bool:
        rows = await db.fetch("SELECT device_id FROM readings WHERE event_id = $1::uuid", event_id)
        return sorted(row["device_id"] for row in rows) == sorted([first, second])

    await wait_until(both_stored, timeout_s=TIMEOUT_S, what=worker.log_tail)


@pytest.mark.parametrize(
    ("node", "field"),
    [
        ({"type": "http", "id": "meta", "url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"type": "http", "id": "registry", "url": "http://127.0.0.1:8081/apis"}, "url"),
        ({"type": "kafka", "id": "state", "topic": "fleetstream-device-status-changelog"}, "topic"),
        ({"type": "kafka", "id": "raw", "topic": "<the pipeline's raw topic>"}, "topic"),
    ],
)
async def test_flows_aimed_at_the_systems_own_services_are_refused(
    api_client: httpx.AsyncClient, pipeline: Settings, node: dict[str, str], field: str
) -> None:
    if node.get("topic") == "<the pipeline's raw topic>":
        node = node | {"topic": pipeline.topics.raw}
    flow = {
        "flow_id": f"egress-{uuid.uuid4().hex[:8]}",
        "definition": {"name": "egress", "nodes": [node]},
    }
    answer = await api_client.post("/api/v1/admin/flows", json=flow, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == f"definition.nodes.0.{field}"


@pytest.mark.disruptive
async def test_redis_refusing_writes_makes_its_sink_wait_and_nothing_else(
    fleet: Fleet, pipeline: Settings, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    devices = device_ids(2)
    await fleet.enroll(devices)
    redis = redis_client(pipeline)
    await redis.config_set("maxmemory-policy", "noeviction")
    used = int((await redis.info("memory"))["used_memory"])
    await redis.config_set("maxmemory", str(used))  # every write is now refused with OOM
    try:
        for n in range(5):
            answer = await fleet.post([reading(device_id, n) for device_id in devices])
            assert answer.status_code == 202, answer.text

        async def waiting_on_redis() -> bool:
            return "writing" in worker.log_tail(200) and "OutOfMemoryError" in worker.log_tail(200)

        await wait_until(waiting_on_redis, timeout_s=TIMEOUT_S, what=worker.log_tail)

        async def stored() -> bool:  # Postgres gets every reading meanwhile
            count = await db.fetchval(
                "SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices
            )
            return int(count) == 10

        await wait_until(stored, timeout_s=TIMEOUT_S, what=worker.log_tail)
        assert worker.running, worker.log_tail()
    finally:
        await redis.config_set("maxmemory", "0")

    async def in_redis() -> bool:
        statuses = [await status_hash(redis, pipeline, device_id) for device_id in devices]
        return all(status.get("online") == "1" for status in statuses)

    await wait_until(in_redis, timeout_s=TIMEOUT_S, what=worker.log_tail)
    assert worker.running, worker.log_tail()
    await redis.aclose()

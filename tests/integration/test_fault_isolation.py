"""One device, one value or one refusing service stops nothing and loses nothing.

Each test repeats a case that stopped the whole pipeline or lost readings (see
docs/operations.md, "Failure model"): extreme values that overflowed a rollup, a device reusing
another's event id, a device inventing field names until its rows passed the broker's message
limit, flows aimed at the system's own services, Redis refusing writes.
"""

from __future__ import annotations

import math
import uuid

import asyncpg
import httpx
import pytest
from confluent_kafka import KafkaException

from schemas.settings import Settings
from schemas.status import (
    DeviceState,
    RollupState,
    decode_device_state,
    decode_rollup_state,
    rollup_row_max_bytes,
    status_row_max_bytes,
)
from streams import tables
from tests import clock
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import read_to_end
from tests.integration.processes import WorkerProcess
from tests.integration.stream_core import core_settings, redis_client, status_hash
from tests.support import wait_until

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


def _changelog_rows(settings: Settings, table: str) -> list[bytes]:
    """Every row the worker wrote to ``table``'s changelog so far, oldest first per device."""
    topic = f"{settings.worker.app_id}-{table}-changelog"
    try:
        return read_to_end(settings.kafka.bootstrap_servers, topic)
    except KafkaException:  # the worker creates the topic as it starts: not served yet
        return []


def _status_rows(settings: Settings) -> dict[str, DeviceState]:
    rows = map(decode_device_state, _changelog_rows(settings, tables.DEVICE_STATUS))
    return {row.device_id: row for row in rows}


def _rollup_rows(settings: Settings) -> dict[str, RollupState]:
    rows = map(decode_rollup_state, _changelog_rows(settings, tables.ROLLUPS))
    return {row.device_id: row for row in rows}


HOSTILE_READINGS = 800
"""Of 32 new generic field names each: 25,600 names, whose last values alone (~47 bytes each)
would make a status row of 1.2 MB, past the broker's 1 MiB message limit."""


async def test_a_device_inventing_field_names_keeps_its_rows_bounded_and_others_unaffected(
    fleet: Fleet, pipeline: Settings, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    hostile, other = device_ids(2)
    await fleet.enroll([hostile, other])
    now = clock.now().replace(microsecond=0).isoformat()

    def hostile_reading(n: int) -> dict[str, object]:
        names = {f"f{n:05d}_{m:02d}_{'x' * 22}": 1.5 for m in range(32)}  # 32 characters each
        return {"device_id": hostile, "timestamp": now, "sensors": {"generic": names}}

    sent_other = 0
    for batch in range(4):
        answer = await fleet.post(
            [reading(other, sent_other + k) | {"timestamp": now} for k in (0, 1)]
        )
        assert answer.status_code == 202, answer.text
        sent_other += 2
        first = batch * HOSTILE_READINGS // 4
        bodies = [hostile_reading(n) for n in range(first, first + HOSTILE_READINGS // 4)]
        answer = await fleet.post(bodies)
        assert answer.status_code == 202, answer.text
    answer = await fleet.post(reading(other, sent_other) | {"timestamp": now})
    assert answer.status_code == 202, answer.text
    sent_other += 1
    names = HOSTILE_READINGS * 32

    async def applied() -> bool:
        states, rollups = _status_rows(pipeline), _rollup_rows(pipeline)
        if not {hostile, other} <= states.keys() or not {hostile, other} <= rollups.keys():
            return False
        status, row = states[hostile], rollups[hostile]
        rolled = sum(len(window) for window in row.windows.values())
        return (
            status.count == HOSTILE_READINGS
            and states[other].count == sent_other
            and rolled + row.dropped_fields == names
        )

    await wait_until(applied, timeout_s=TIMEOUT_S, what=worker.log_tail)
    assert worker.running, worker.log_tail()

    stream, partitions = pipeline.stream, pipeline.kafka.partitions
    status_bound = status_row_max_bytes(stream.status_max_values, partitions)
    rollup_bound = rollup_row_max_bytes(
        stream.rollup_max_windows, stream.rollup_max_fields, partitions
    )
    status_rows = _changelog_rows(pipeline, tables.DEVICE_STATUS)
    rollup_rows = _changelog_rows(pipeline, tables.ROLLUPS)
    assert max(map(len, status_rows)) <= status_bound
    assert max(map(len, rollup_rows)) <= rollup_bound
    status = _status_rows(pipeline)[hostile]
    assert len(status.last_values) == stream.status_max_values
    assert status.values_dropped == names - stream.status_max_values
    assert f"generic.f{HOSTILE_READINGS - 1:05d}_31_{'x' * 22}" in status.last_values, "newest kept"
    row = _rollup_rows(pipeline)[hostile]
    (window,) = row.windows.values()  # every reading has the same timestamp
    assert len(window) == stream.rollup_max_fields
    assert row.dropped_fields == names - stream.rollup_max_fields

    ours = _status_rows(pipeline)[other]
    assert set(ours.last_values) == {
        "ld2410.presence",
        "ld2410.distance_cm",
        "ld2410.moving_energy",
        "pir.motion_detected",
        "mq134.gas_concentration",
    }

    async def others_rolled_up() -> bool:
        total = await db.fetchval(
            "SELECT sum(count) FROM readings_1m WHERE device_id = $1 AND field = $2",
            other,
            "mq134.gas_concentration",
        )
        return bool(total == sent_other)

    await wait_until(others_rolled_up, timeout_s=TIMEOUT_S, what=worker.log_tail)
    stored = await db.fetch(
        "SELECT device_id, count(*) AS n FROM readings WHERE device_id = ANY($1) GROUP BY 1",
        [hostile, other],
    )
    assert {record["device_id"]: record["n"] for record in stored} == {
        hostile: HOSTILE_READINGS,
        other: sent_other,
    }
    assert worker.running, worker.log_tail()


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
        ({"type": "http", "id": "registry", "url": "<the stack's schema registry>"}, "url"),
        ({"type": "kafka", "id": "state", "topic": "fleetstream-device-status-changelog"}, "topic"),
        ({"type": "kafka", "id": "raw", "topic": "<the pipeline's raw topic>"}, "topic"),
    ],
)
async def test_flows_aimed_at_the_systems_own_services_are_refused(
    api_client: httpx.AsyncClient, pipeline: Settings, node: dict[str, str], field: str
) -> None:
    if node.get("topic") == "<the pipeline's raw topic>":
        node = node | {"topic": pipeline.topics.raw}
    if node.get("url") == "<the stack's schema registry>":  # wherever the settings put it
        node = node | {"url": pipeline.schema_registry.url}
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

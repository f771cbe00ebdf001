"""The stream core through the real stack: enrichment, the status table, both sinks, rollups."""

from __future__ import annotations

import json

import asyncpg
import httpx
import msgspec
import pytest

from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.processes import WorkerProcess
from tests.integration.stream_core import (
    core_settings,
    curated_records,
    latest_hash,
    redis_client,
    row_counts,
    status_hash,
    transitions,
)
from tests.support import wait_until

TIMEOUT_S = 90.0


@pytest.fixture
def pipeline(pipeline: Settings) -> Settings:
    return core_settings(pipeline)


async def test_readings_reach_postgres_redis_and_the_readings_topic_enriched(
    fleet: Fleet,
    api_client: httpx.AsyncClient,
    pipeline: Settings,
    worker: WorkerProcess,
    db: asyncpg.Connection,
) -> None:
    devices = device_ids(3)
    location = {"building": "A", "floor": 2}
    await fleet.enroll(
        devices, name="Lobby", profile="esp32", tags=["lobby"], metadata={"location": location}
    )
    for device_id in devices:
        batch = [reading(device_id, n) for n in range(10)]
        response = await fleet.post(batch)
        assert response.status_code == 202, response.text
    redis = redis_client(pipeline)

    async def everywhere() -> bool:
        counts = await row_counts(db, devices)
        statuses = [await status_hash(redis, pipeline, d) for d in devices]
        return counts == {d: 10 for d in devices} and all(s.get("online") == "1" for s in statuses)

    await wait_until(everywhere, timeout_s=TIMEOUT_S, what=lambda: f"rows\n{worker.log_tail()}")

    records = curated_records(pipeline, devices)
    assert len({r["event_id"] for r in records}) == 30
    for record in records:
        assert (record["device_name"], record["profile"], record["tags"]) == (
            "Lobby",
            "esp32",
            ["lobby"],
        )
        assert json.loads(record["location"]) == location
        assert record["lag_ms"] >= 0
    latest = await latest_hash(redis, pipeline, devices[0])
    assert msgspec.json.decode(latest["reading"])["device_name"] == "Lobby"
    newest = max(r["ts"] for r in records if r["device_id"] == devices[0])
    assert latest["ts"] == newest.isoformat()
    seen = await db.fetch(
        "SELECT device_id, last_seen_at FROM devices WHERE device_id = ANY($1)", devices
    )
    assert len(seen) == 3 and all(row["last_seen_at"] is not None for row in seen)

    answer = await api_client.get(f"/api/v1/devices/{devices[0]}/status", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["online"] is True and body["seq"] == 1
    assert body["last_values"]["mq134.gas_concentration"] == 10.0 + 9 / 4
    own = await api_client.get(
        f"/api/v1/devices/{devices[0]}/status", headers=fleet.headers(devices[0])
    )
    assert own.status_code == 200
    other = await api_client.get(
        f"/api/v1/devices/{devices[1]}/status", headers=fleet.headers(devices[0])
    )
    assert other.status_code == 403
    await redis.aclose()


async def test_a_silent_device_goes_offline_and_back_online_each_transition_once(
    fleet: Fleet, pipeline: Settings, worker: WorkerProcess
) -> None:
    quiet, chatty = device_ids(2)
    await fleet.enroll([quiet], inactivity_timeout_s=2)
    await fleet.enroll([chatty], inactivity_timeout_s=600)
    redis = redis_client(pipeline)

    async def state_is(device_id: str, seq: str, online: str) -> bool:
        status = await status_hash(redis, pipeline, device_id)
        return (status.get("seq"), status.get("online")) == (seq, online)

    async def chatty_online() -> bool:
        return await state_is(chatty, "1", "1")

    # A reading processed more than its timeout after the edge received it goes online no more
    # (it is old news): so the quiet device posts once the worker runs.
    assert (await fleet.post(reading(chatty, 0))).status_code == 202
    await wait_until(chatty_online, timeout_s=TIMEOUT_S, what=lambda: f"up\n{worker.log_tail()}")
    assert (await fleet.post(reading(quiet, 0))).status_code == 202

    async def quiet_offline() -> bool:
        return await state_is(quiet, "2", "0")

    await wait_until(
        quiet_offline, timeout_s=TIMEOUT_S, what=lambda: f"offline\n{worker.log_tail()}"
    )
    assert await state_is(chatty, "1", "1")
    assert (await fleet.post(reading(quiet, 1))).status_code == 202

    async def quiet_online_again() -> bool:
        return await state_is(quiet, "3", "1")

    await wait_until(quiet_online_again, timeout_s=TIMEOUT_S, what="online again")
    changes = transitions(pipeline)
    # Each transition once, numbered without gaps (quiet may have gone offline again since).
    assert [c.seq for c in changes[quiet]] == list(range(1, len(changes[quiet]) + 1))
    assert [(c.seq, c.online, c.reason) for c in changes[quiet][:3]] == [
        (1, True, "reading"),
        (2, False, "timeout"),
        (3, True, "reading"),
    ]
    assert [(c.seq, c.online) for c in changes[chatty]] == [(1, True)]
    await redis.aclose()


async def test_a_deleted_device_loses_its_live_status_and_comes_back_as_never_seen(
    fleet: Fleet, api_client: httpx.AsyncClient, pipeline: Settings, worker: WorkerProcess
) -> None:
    gone, kept = device_ids(2)
    await fleet.enroll([gone, kept])
    for device_id in (gone, kept):
        assert (await fleet.post(reading(device_id, 0))).status_code == 202
    redis = redis_client(pipeline)

    async def both_seen() -> bool:
        statuses = [await status_hash(redis, pipeline, d) for d in (gone, kept)]
        latest = [await latest_hash(redis, pipeline, d) for d in (gone, kept)]
        return all(s.get("online") == "1" for s in statuses) and all(latest)

    await wait_until(both_seen, timeout_s=TIMEOUT_S, what=lambda: f"seen\n{worker.log_tail()}")
    deleted = await api_client.delete(f"/api/v1/admin/devices/{gone}", headers=ADMIN)
    assert deleted.status_code == 204, deleted.text

    async def forgotten() -> bool:
        status = await status_hash(redis, pipeline, gone)
        return not status and not await latest_hash(redis, pipeline, gone)

    await wait_until(forgotten, timeout_s=TIMEOUT_S, what=lambda: f"gone\n{worker.log_tail()}")
    assert (await status_hash(redis, pipeline, kept)).get("online") == "1"
    assert await latest_hash(redis, pipeline, kept)

    # Registered again, the id starts as never seen, not with the deleted device's status ...
    await fleet.enroll([gone])
    answer = await api_client.get(f"/api/v1/devices/{gone}/status", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["online"], body["last_seen"], body["seq"], body["last_values"]) == (
        False,
        None,
        0,
        {},
    )
    # ... and the status table's row went too: its first reading is a first transition.
    assert (await fleet.post(reading(gone, 1))).status_code == 202

    async def online_from_scratch() -> bool:
        status = await status_hash(redis, pipeline, gone)
        return (status.get("online"), status.get("seq")) == ("1", "1")

    await wait_until(
        online_from_scratch, timeout_s=TIMEOUT_S, what=lambda: f"back\n{worker.log_tail()}"
    )
    await redis.aclose()

"""The seed-compatible HTTP edge through the real stack: every seed route's payload ends as rows
in Postgres and in the latest route; credentials decide 401/403; a batch names its bad item;
an Idempotency-Key reused with another body is refused by another API instance (Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from api.app import create_app
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import end_offsets
from tests.integration.processes import WorkerProcess
from tests.support import wait_until

ROWS_TIMEOUT_S = 90.0


def _equipment(equipment_id: str, n: int) -> dict[str, Any]:
    ts = datetime.now(UTC) - timedelta(minutes=30) + timedelta(seconds=n)
    return {
        "equipment_id": equipment_id,
        "temperature": 70.0 + n,
        "vibration": 0.4,
        "pressure": 3.0,
        "humidity": 50.0,
        "voltage": 230.0,
        "timestamp": ts.replace(tzinfo=None).isoformat(),  # seed 001 sends naive UTC
    }


def _uplink(dev_eui: str, dedup: str, n: int) -> dict[str, Any]:
    return {
        "deduplicationId": dedup,
        "time": (datetime.now(UTC) - timedelta(minutes=5) + timedelta(seconds=n)).isoformat(),
        "deviceInfo": {"devEui": dev_eui.lower(), "deviceName": "lora-1", "tenantId": "x"},
        "fCnt": n,
        "fPort": 2,
        "data": "AQ==",
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -60}],
        "object": {"mq134": {"gas_concentration": 11.5}},
    }


async def _rows(db: asyncpg.Connection, device_id: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT event_id::text AS id, source, sensors::text AS sensors, metadata::text AS "
            "metadata FROM readings WHERE device_id = $1 ORDER BY ts",
            device_id,
        )
    )


async def _stored(
    db: asyncpg.Connection, device_id: str, count: int, worker: WorkerProcess
) -> None:
    async def enough() -> bool:
        return len(await _rows(db, device_id)) >= count

    await wait_until(
        enough, timeout_s=ROWS_TIMEOUT_S, what=lambda: f"{device_id} rows\n{worker.log_tail()}"
    )


async def test_every_seed_route_ends_in_postgres_and_in_the_latest_route(
    fleet: Fleet, api_client: httpx.AsyncClient, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    run = device_ids(1)[0].split("-")[1].upper()  # 8 hex digits, fresh per test
    equipment = f"PUMP-{run}-001"
    esp32 = device_ids(1)[0]
    dev_eui = run * 2  # ChirpStack's 16 hex digits, upper-cased as the seed stored them
    await fleet.enroll([equipment, esp32, dev_eui])

    # seed 001: one reading (lower-case id is the seed's habit: it upper-cases) and a batch
    one = await fleet.client.post(
        "/api/v1/sensors/ingest",
        json=_equipment(equipment.lower(), 0),
        headers=fleet.headers(equipment),
    )
    assert one.status_code == 201, one.text
    assert one.json()["equipment_id"] == equipment
    batch = await fleet.client.post(
        "/api/v1/sensors/ingest/batch",
        json={"readings": [_equipment(equipment, n) for n in range(1, 4)]},
        headers=fleet.headers(equipment),
    )
    assert batch.status_code == 201, batch.text
    assert batch.json()["successful"] == 3

    # seed 002: one reading and a batch
    single = await fleet.post(reading(esp32, 0), path="/api/v1/sensor-data")
    assert single.status_code == 202, single.text
    many = await fleet.post(
        [reading(esp32, n) for n in range(1, 3)], path="/api/v1/sensor-data/batch"
    )
    assert many.status_code == 202, many.text

    # seed 000: a ChirpStack uplink, sent twice (ChirpStack retries): stored once
    dedup = "6f0e1a4c-2b7d-4c1e-9a3b-5d6e7f809a1b"
    event = _uplink(dev_eui, dedup, 7)
    for _ in range(2):
        uplink = await fleet.client.post(
            "/api/v1/ingest/chirpstack",
            json=event,
            headers=fleet.headers(dev_eui),
        )
        assert uplink.status_code == 202, uplink.text
        assert uplink.json()["event_id"] == dedup

    await _stored(db, equipment, 4, worker)
    await _stored(db, esp32, 3, worker)
    await _stored(db, dev_eui, 1, worker)

    eq_rows = await _rows(db, equipment)
    assert sorted(r["id"] for r in eq_rows) == sorted(
        [one.json()["reading_id"], *batch.json()["reading_ids"]]
    )
    assert '"temperature": 73.0' in eq_rows[-1]["sensors"]
    assert eq_rows[-1]["metadata"] == '{"voltage": 230.0}'
    assert len(await _rows(db, dev_eui)) == 1

    latest = await api_client.get(
        f"/api/v1/sensors/{equipment}/latest", params={"limit": 2}, headers=fleet.headers(equipment)
    )
    assert latest.status_code == 200, latest.text
    body = latest.json()
    assert body["count"] == 2
    assert body["readings"][0]["temperature"] == 73.0  # newest first, flat as in seed 001
    assert body["latest"]["equipment"]["values"]["temperature"] == 73.0
    esp_latest = await api_client.get(f"/api/v1/sensors/{esp32}/latest", headers=ADMIN)
    assert esp_latest.status_code == 200
    assert set(esp_latest.json()["latest"]) == {"ld2410", "pir", "mq134"}
    newest = many.json()["results"][-1]["message_id"]
    assert esp_latest.json()["latest"]["pir"]["reading_id"] == newest


async def test_wrong_key_is_401_and_another_devices_id_is_403(
    fleet: Fleet, api_client: httpx.AsyncClient, pipeline: Settings
) -> None:
    mine, other = device_ids(2)
    await fleet.enroll([mine, other])
    wrong = await api_client.post(
        "/v1/readings", json=reading(mine, 1), headers={"X-API-Key": "not-a-real-token-000"}
    )
    assert wrong.status_code == 401
    missing = await api_client.post("/api/v1/sensor-data", json=reading(mine, 1))
    assert missing.status_code == 401
    foreign = await api_client.post(
        "/v1/readings", json=[reading(mine, 1), reading(other, 2)], headers=fleet.headers(mine)
    )
    assert foreign.status_code == 403
    assert foreign.json()["errors"] == [
        {
            "index": 1,
            "field": "device_id",
            "message": "does not match the device of the credentials",
            "type": "forbidden",
        }
    ]
    kafka = pipeline.kafka
    assert end_offsets(kafka.bootstrap_servers, pipeline.topics.raw, kafka.partitions) == 0


async def test_a_batch_with_one_bad_item_names_it_and_sends_nothing(
    fleet: Fleet, pipeline: Settings
) -> None:
    device = device_ids(1)[0]
    await fleet.enroll([device])
    batch = [reading(device, n) for n in range(5)]
    batch[3]["metadata"] = {"site": "lab\u0000"}
    response = await fleet.post(batch)
    assert response.status_code == 422
    problem = response.json()
    assert problem["invalid_items"] == [3]
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [(3, "metadata.site")]
    old = reading(device, 0) | {"timestamp": (datetime.now(UTC) - timedelta(days=40)).isoformat()}
    too_old = await fleet.post(old)
    assert too_old.status_code == 422
    assert too_old.json()["errors"][0]["field"] == "timestamp"
    kafka = pipeline.kafka
    assert end_offsets(kafka.bootstrap_servers, pipeline.topics.raw, kafka.partitions) == 0


async def test_an_idempotency_key_reused_with_another_body_is_refused_by_another_instance(
    fleet: Fleet, pipeline: Settings
) -> None:
    device = device_ids(1)[0]
    await fleet.enroll([device])
    headers = {"Idempotency-Key": f"boot-{device}"}
    first = await fleet.post([reading(device, 1), reading(device, 2)], headers=headers)
    assert first.status_code == 202, first.text
    other = create_app(pipeline)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as client:
            second = Fleet(client)
            second.tokens = fleet.tokens

            async def knows_the_device() -> bool:
                return await second._known(device)

            await wait_until(knows_the_device, timeout_s=15, what="instance B's device cache")
            retry = await second.post([reading(device, 1), reading(device, 2)], headers=headers)
            changed = await second.post([reading(device, 1), reading(device, 3)], headers=headers)
    assert retry.status_code == 202
    assert retry.json()["event_ids"] == first.json()["event_ids"]
    assert changed.status_code == 422
    assert changed.json()["errors"][0]["field"] == "Idempotency-Key"

"""HTTP → Kafka → worker → Postgres, and the two ways out for bad input (422, dead letter)."""

from __future__ import annotations

import json

import asyncpg

from schemas.contract_wire import decode_dead_letter
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.kafka_tools import end_offsets, produce, raw_events, read_all, read_to_end
from tests.integration.processes import WorkerProcess
from tests.support import wait_until

ROWS_TIMEOUT_S = 90.0


async def row_count(db: asyncpg.Connection, devices: list[str]) -> int:
    count = await db.fetchval("SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices)
    return int(count)


async def test_posted_readings_land_in_postgres_exactly_once(
    fleet: Fleet, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    devices = device_ids(5)
    await fleet.enroll(devices)
    accepted: list[str] = []
    singles = [reading(devices[n % 5], n) for n in range(20)]
    for body in singles:
        response = await fleet.post(body)
        assert response.status_code == 202, response.text
        accepted += response.json()["event_ids"]
    for start in range(20, 220, 50):
        batch = [reading(devices[n % 5], n) for n in range(start, start + 50)]
        response = await fleet.post(batch)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 50
        accepted += response.json()["event_ids"]

    async def all_rows_in() -> bool:
        return await row_count(db, devices) >= len(accepted)

    await wait_until(
        all_rows_in, timeout_s=ROWS_TIMEOUT_S, what=lambda: f"rows\n{worker.log_tail()}"
    )
    stored = await db.fetch(
        "SELECT event_id::text AS id, sensor_types FROM readings WHERE device_id = ANY($1)",
        devices,
    )
    assert len(accepted) == 220
    assert sorted(row["id"] for row in stored) == sorted(accepted)
    assert all(row["sensor_types"] == ["ld2410", "mq134", "pir"] for row in stored)


async def test_retried_request_with_idempotency_key_stores_each_reading_once(
    fleet: Fleet,
    pipeline: Settings,
    worker: WorkerProcess,
    db: asyncpg.Connection,
) -> None:
    devices = device_ids(1)
    await fleet.enroll(devices)
    batch = [reading(devices[0], n) for n in range(10)]
    headers = {"Idempotency-Key": f"batch-{devices[0]}"}
    first = await fleet.post(batch, headers=headers)
    retry = await fleet.post(batch, headers=headers)
    assert first.status_code == retry.status_code == 202
    assert first.json()["event_ids"] == retry.json()["event_ids"]
    # The same key with another body is refused: it would map new readings onto stored ids.
    changed = await fleet.post([reading(devices[0], n + 1) for n in range(10)], headers=headers)
    assert changed.status_code == 422, changed.text
    assert changed.json()["errors"][0]["field"] == "Idempotency-Key"
    # Same device, same partition: once this later reading is stored, the sink has seen both
    # copies of the batch.
    sentinel = await fleet.post(reading(devices[0], 99))
    assert sentinel.status_code == 202

    async def sentinel_stored() -> bool:
        found = await db.fetchval(
            "SELECT count(*) FROM readings WHERE event_id = $1::uuid",
            sentinel.json()["event_ids"][0],
        )
        return bool(found)

    await wait_until(sentinel_stored, timeout_s=ROWS_TIMEOUT_S, what="the sentinel row")
    # Both copies of the batch are in Kafka (three envelopes, 21 readings): the sink dropped
    # the repeats, not the edge.
    raw = read_to_end(pipeline.kafka.bootstrap_servers, pipeline.topics.raw)
    ids = [event.event_id for value in raw for event in raw_events(value)]
    assert len(raw) == 3
    assert sorted(ids) == sorted(first.json()["event_ids"] * 2 + sentinel.json()["event_ids"])
    assert await row_count(db, devices) == 11


async def test_invalid_reading_is_rejected_at_the_edge_naming_the_field(
    fleet: Fleet, pipeline: Settings
) -> None:
    devices = device_ids(1)
    await fleet.enroll(devices)
    bad = reading(devices[0], sensors={"mq134": {"gas_concentration": -3}})
    response = await fleet.post(bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["sensors.mq134.gas_concentration"]

    batch = [
        reading(devices[0], 0),
        {"device_id": devices[0]},
        reading(devices[0], 2, sensors={"pir": {}}),
    ]
    response = await fleet.post(batch)
    assert response.status_code == 422
    indexes = sorted({e["index"] for e in response.json()["errors"]})
    assert indexes == [1, 2]
    # Nothing of a rejected request reaches Kafka.
    raw = pipeline.topics.raw
    assert end_offsets(pipeline.kafka.bootstrap_servers, raw, pipeline.kafka.partitions) == 0


async def test_invalid_raw_events_become_dead_letters_with_reason_and_original_bytes(
    pipeline: Settings, worker: WorkerProcess
) -> None:
    device = device_ids(1)[0]
    not_json = b"\xff\xfe definitely not json"
    bad_payload = json.dumps(
        {
            "event_id": "0194c0de-0000-7000-8000-000000000001",
            "device_id": device,
            "received_at": "2026-11-25T10:00:00Z",
            "source": "mqtt",
            "payload": {"device_id": device, "sensors": {"ld2410": {"presence": "yes"}}},
        }
    ).encode()
    bootstrap = pipeline.kafka.bootstrap_servers
    produce(
        bootstrap,
        pipeline.topics.raw,
        [(device.encode(), not_json), (device.encode(), bad_payload)],
    )

    letters = [decode_dead_letter(v) for v in read_all(bootstrap, pipeline.topics.deadletter, 2)]
    assert len(letters) == 2, worker.log_tail()
    by_original = {letter.original: letter for letter in letters}
    assert set(by_original) == {not_json, bad_payload}
    assert all(letter.stage == "validate" for letter in letters)
    assert "sensors.ld2410.presence" in by_original[bad_payload].reason
    assert by_original[not_json].reason
    assert end_offsets(bootstrap, pipeline.topics.readings, pipeline.kafka.partitions) == 0

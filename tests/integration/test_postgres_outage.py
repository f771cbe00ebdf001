"""Postgres going away mid-stream stalls the sink; nothing is skipped or dead-lettered."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from cli.stack import manager
from streams.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.kafka_tools import end_offsets
from tests.integration.processes import WorkerProcess
from tests.support import wait_until


@pytest.mark.disruptive
async def test_sink_waits_for_postgres_and_then_stores_every_reading(
    api_client: httpx.AsyncClient,
    pipeline: Settings,
    stack_settings: Settings,
    worker: WorkerProcess,
) -> None:
    devices = device_ids(4)
    manager.down(stack_settings, services=["postgres"], progress=print)
    try:
        response = await api_client.post(
            "/v1/readings", json=[reading(devices[n % 4], n) for n in range(300)]
        )
        assert response.status_code == 202, response.text
        accepted = response.json()["event_ids"]

        async def sink_is_retrying() -> bool:
            return "to Postgres failed" in worker.log_tail(200)

        await wait_until(sink_is_retrying, timeout_s=90, what=lambda: worker.log_tail())
    finally:
        manager.up(stack_settings, services=["postgres"], progress=print)

    db = await asyncpg.connect(stack_settings.postgres.dsn())
    try:

        async def all_stored() -> bool:
            count = await db.fetchval(
                "SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices
            )
            return int(count) >= len(accepted)

        await wait_until(all_stored, timeout_s=120, what=lambda: worker.log_tail())
        rows = await db.fetch(
            "SELECT event_id::text AS id FROM readings WHERE device_id = ANY($1)", devices
        )
    finally:
        await db.close()
    assert sorted(row["id"] for row in rows) == sorted(accepted)
    kafka = pipeline.kafka
    assert end_offsets(kafka.bootstrap_servers, pipeline.topics.deadletter, kafka.partitions) == 0

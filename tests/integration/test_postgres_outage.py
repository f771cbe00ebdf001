"""Postgres going away mid-stream stalls the sink without committing; nothing is lost.

Review found that one null record, while Postgres was down, crashed the old sink agent, and the
restarted agent's stream kept acking readings nobody stored. Here each consumed topic gets a
null and a garbage record during the outage, then 1,000 readings; once Postgres is back every
reading is a row, the four bad records are dead letters, and the worker never stopped.
"""

from __future__ import annotations

from collections import Counter

import pytest

from agents import postgres_sink
from agents.sink_group import group_id
from cli.stack import manager
from connectors.postgres.pool import connect
from schemas.contract_wire import decode_dead_letter
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.kafka_tools import committed, partition_ends, produce, read_to_end
from tests.integration.processes import WorkerProcess
from tests.support import wait_until

READINGS = 1000


@pytest.mark.disruptive
async def test_sink_waits_for_postgres_without_committing_and_then_stores_every_reading(
    fleet: Fleet,
    pipeline: Settings,
    stack_settings: Settings,
    worker: WorkerProcess,
) -> None:
    devices = device_ids(4)
    await fleet.enroll(devices)  # before the outage: the admin API stores devices in Postgres
    bootstrap, group, topics = (
        pipeline.kafka.bootstrap_servers,
        pipeline.worker.app_id,
        pipeline.topics,
    )
    sink_group = group_id(pipeline, postgres_sink.GROUP)
    manager.down(stack_settings, services=["postgres"], progress=print)
    try:
        poison = [(b"poison", b"\x00garbage\xff"), (None, None)]
        produce(bootstrap, topics.raw, poison)
        produce(bootstrap, topics.curated, poison)
        accepted: list[str] = []
        for start in range(0, READINGS, 250):
            body = [reading(devices[n % 4], n) for n in range(start, start + 250)]
            response = await fleet.post(body)
            assert response.status_code == 202, response.text
            accepted += response.json()["event_ids"]

        async def sink_is_retrying() -> bool:
            return "to Postgres failed" in worker.log_tail(200)

        await wait_until(sink_is_retrying, timeout_s=90, what=lambda: worker.log_tail())
        before = committed(bootstrap, sink_group, topics.curated)

        async def validate_done() -> bool:
            return committed(bootstrap, group, topics.raw) == partition_ends(bootstrap, topics.raw)

        # Commits run (validate finished all of fleet.raw.v1) while the sink's offsets stay.
        await wait_until(validate_done, timeout_s=60, what=lambda: worker.log_tail())
        assert committed(bootstrap, sink_group, topics.curated) == before
        assert sum(before.values()) < sum(partition_ends(bootstrap, topics.curated).values())
    finally:
        manager.up(stack_settings, services=["postgres"], progress=print)

    db = await connect(stack_settings.postgres)
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

    # Every consumer of fleet.curated.v1 (status, rollups, flows, the sinks) dead-letters the
    # two poison records it reads there; validate those on fleet.raw.v1.
    def letters_by_stage() -> Counter[tuple[str, str]]:
        letters = [decode_dead_letter(v) for v in read_to_end(bootstrap, topics.deadletter)]
        return Counter((letter.stage, letter.source_topic) for letter in letters)

    async def poison_dead_lettered() -> bool:
        found = letters_by_stage()
        return (
            found[("validate", topics.raw)] == 2 and found[("sink.postgres", topics.curated)] == 2
        )

    await wait_until(poison_dead_lettered, timeout_s=60, what=lambda: str(letters_by_stage()))
    assert {source for _, source in letters_by_stage()} == {topics.raw, topics.curated}
    assert worker.running, "a bad record must never stop the worker"

"""A worker killed with SIGKILL while a batch is written but not committed loses nothing.

The kill has to land in the window that matters: the sink holds a batch whose rows are not
committed in Postgres (a ``LOCK TABLE readings`` blocks its INSERT) while offset commits keep
running for everything else. An implementation that acked before writing would have committed
the sink's offsets by then and lose the batch; ours must redeliver it to the next worker.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from agents import postgres_sink
from agents.sink_group import group_id
from connectors.postgres.pool import connect
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.kafka_tools import committed, partition_ends
from tests.integration.processes import WorkerProcess
from tests.support import wait_until

BATCHES = 20
BATCH_SIZE = 100


async def stored_ids(db: asyncpg.Connection, devices: list[str]) -> list[str]:
    rows = await db.fetch(
        "SELECT event_id::text AS id FROM readings WHERE device_id = ANY($1)", devices
    )
    return sorted(row["id"] for row in rows)


async def test_sigkill_while_the_sink_waits_on_its_write_redelivers_the_batch(
    fleet: Fleet,
    pipeline: Settings,
    worker_factory: list[WorkerProcess],
    db: asyncpg.Connection,
    stack_settings: Settings,
    tmp_path: Path,
) -> None:
    devices = device_ids(8)
    await fleet.enroll(devices)
    bootstrap, group = pipeline.kafka.bootstrap_servers, pipeline.worker.app_id
    sink_group = group_id(pipeline, postgres_sink.GROUP)
    first = WorkerProcess(pipeline, tmp_path / "worker-1.log")
    worker_factory.append(first)
    first.start()
    warm = await fleet.post(reading(devices[0], 0))
    accepted: list[str] = warm.json()["event_ids"]

    async def warmed_up() -> bool:
        return len(await stored_ids(db, devices)) == 1

    await wait_until(warmed_up, timeout_s=90, what=lambda: f"first row\n{first.log_tail()}")

    locker = await connect(stack_settings.postgres)
    lock = locker.transaction()
    await lock.start()
    await locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
    try:
        for b in range(BATCHES):
            batch = [reading(devices[n % 8], b * BATCH_SIZE + n + 1) for n in range(BATCH_SIZE)]
            response = await fleet.post(batch)
            assert response.status_code == 202, response.text
            accepted += response.json()["event_ids"]

        async def sink_blocked_on_the_lock() -> bool:
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND (query ILIKE 'INSERT INTO readings%' OR query ILIKE 'COPY %readings%')"
            )
            return bool(waiting)

        await wait_until(sink_blocked_on_the_lock, timeout_s=60, what="the sink's blocked INSERT")

        async def validate_committed_everything() -> bool:
            ends = partition_ends(bootstrap, pipeline.topics.raw)
            return committed(bootstrap, group, pipeline.topics.raw) == ends

        # Offset commits are running (validate's reached the end of fleet.raw.v1) ...
        await wait_until(validate_committed_everything, timeout_s=60, what="validate's commits")
        # ... but not for the batch the sink has not written.
        curated_ends = partition_ends(bootstrap, pipeline.topics.curated)
        curated_committed = committed(bootstrap, sink_group, pipeline.topics.curated)
        assert sum(curated_committed.values()) < sum(curated_ends.values())
        first.kill()
    finally:
        await lock.rollback()
        await locker.close()

    assert await stored_ids(db, devices) == [accepted[0]], "rows written under the lock"
    second = WorkerProcess(pipeline, tmp_path / "worker-2.log")
    worker_factory.append(second)
    second.start()

    async def all_stored() -> bool:
        return len(await stored_ids(db, devices)) >= len(accepted)

    await wait_until(all_stored, timeout_s=120, what=lambda: f"all rows\n{second.log_tail()}")
    assert await stored_ids(db, devices) == sorted(accepted)
    assert len(accepted) == BATCHES * BATCH_SIZE + 1

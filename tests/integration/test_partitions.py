"""Day partitions: the sink never creates them (an old reading lands in readings_default), the
maintenance pass and `fleetstream db partitions` create them, moving such rows out of DEFAULT."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import pytest

from agents.maintenance import PartitionKeeper
from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ensure_day_partitions
from schemas.envelopes import encode_item, raw_envelope
from schemas.settings import Settings
from tests.factories import device_ids, raw_event, reading
from tests.integration.kafka_tools import produce
from tests.integration.processes import WorkerProcess
from tests.support import wait_until


def _name(day: date) -> str:
    return f"readings_{day:%Y%m%d}"


async def _exists(db: asyncpg.Connection, day: date) -> bool:
    return bool(await db.fetchval("SELECT to_regclass($1) IS NOT NULL", _name(day)))


@pytest.fixture
async def pool(stack_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack_settings.postgres, min_size=0, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def made(db: asyncpg.Connection) -> AsyncIterator[list[date]]:
    """Days whose partitions a test made; dropped afterwards (they hold only test rows)."""
    days: list[date] = []
    yield days
    for day in days:
        await db.execute(f'DROP TABLE IF EXISTS "{_name(day)}"')


async def test_an_old_reading_lands_in_default_and_moves_into_its_partition_when_made(
    pipeline: Settings,
    worker: WorkerProcess,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    made: list[date],
) -> None:
    # A day two to three years back that no test uses: the edge would refuse it (30 days),
    # but MQTT and replays reach the worker, which only refuses timestamps before 2000.
    day = datetime.now(UTC).date() - timedelta(days=random.randint(730, 1095))
    assert not await _exists(db, day)
    device = device_ids(1)[0]
    body = reading(device, 0) | {"timestamp": datetime.combine(day, time(9), UTC).isoformat()}
    event = raw_event(body)
    produce(
        pipeline.kafka.bootstrap_servers,
        pipeline.topics.raw,
        [(device.encode(), raw_envelope([encode_item(event)]))],
    )

    async def stored() -> bool:
        found = await db.fetchval(
            "SELECT tableoid::regclass::text FROM readings WHERE event_id = $1::uuid",
            event.event_id,
        )
        return found is not None

    await wait_until(stored, timeout_s=90, what=lambda: f"the row\n{worker.log_tail()}")
    where = await db.fetchval(
        "SELECT tableoid::regclass::text FROM readings WHERE event_id = $1::uuid", event.event_id
    )
    assert where == "readings_default"
    assert not await _exists(db, day)  # the sink made no partition

    made.append(day)
    assert await ensure_day_partitions(pool, day, day) == [day]
    where = await db.fetchval(
        "SELECT tableoid::regclass::text FROM readings WHERE event_id = $1::uuid", event.event_id
    )
    assert where == _name(day)
    assert await ensure_day_partitions(pool, day, day) == []  # idempotent


async def test_the_maintenance_pass_makes_yesterday_to_the_days_ahead(
    stack_settings: Settings, db: asyncpg.Connection, made: list[date]
) -> None:
    today = date(2090, 1, 1) + timedelta(days=random.randint(0, 3000))
    settings = stack_settings.model_copy(
        update={"postgres": stack_settings.postgres.model_copy(update={"partitions_ahead_days": 3})}
    )
    keeper = PartitionKeeper(settings)
    try:
        expected = [today + timedelta(days=n) for n in range(-1, 4)]
        made.extend(expected)
        assert await keeper.run(today) == expected
        assert all([await _exists(db, day) for day in expected])
        assert not await _exists(db, today + timedelta(days=4))
        assert await keeper.run(today) == []
    finally:
        await keeper.close()

"""Retention against the real database: old partitions and rows gone, recent kept, blobs too.

The tests run in a database of their own (created, migrated and dropped here), since dropping
partitions in the suite's shared database would take other tests' rows. "Now" is fixed
(:data:`NOW`), given to the code as its clock and to the CLI as ``--now``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agents.maintenance import RetentionKeeper
from connectors.blob.filesystem import FilesystemBlobStore
from connectors.postgres import migrate, retention
from connectors.postgres.readings import ensure_day_partitions
from schemas.settings import BlobSettings, Settings
from tests.integration.processes import run_cli

NOW = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)
DAYS = 30  # every kind's retention in these tests: the cut is 2027-05-16 12:00
OLD_DAYS = [date(2027, 5, 10) + timedelta(days=n) for n in range(6)]  # 05-10 .. 05-15: all old
KEPT_DAYS = [date(2027, 5, 16), date(2027, 5, 17), date(2027, 6, 15)]  # 05-16 ends after the cut


@pytest.fixture
def own_db(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh, migrated database and a blob folder of the test's own."""
    name = f"fleet_retention_{uuid.uuid4().hex[:10]}"
    admin = stack_settings.postgres.dsn()
    _run(_execute(admin, f'CREATE DATABASE "{name}"'))
    settings = stack_settings.model_copy(
        update={
            "postgres": stack_settings.postgres.model_copy(
                update={
                    "database": name,
                    "retention_days": DAYS,
                    "rollup_retention_days": DAYS,
                    "alert_retention_days": DAYS,
                    "media_retention_days": DAYS,
                }
            ),
            "blob": BlobSettings(backend="filesystem", root=tmp_path / "blobs"),
        }
    )
    migrate.upgrade(settings.postgres)
    yield settings
    _run(_execute(admin, f'DROP DATABASE "{name}" WITH (FORCE)'))


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pool(own_db: Settings) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(own_db.postgres.dsn(), min_size=1, max_size=2)
    assert created is not None
    yield created
    await created.close()


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def _reading(conn: asyncpg.Connection, ts: datetime) -> None:
    await conn.execute(
        "INSERT INTO readings (event_id, device_id, ts, received_at, source, sensor_types, "
        "sensors) VALUES ($1, 'd1', $2, $2, 'http', ARRAY['pir'], '{}'::jsonb)",
        uuid.uuid4(),
        ts,
    )


async def _fill(pool: asyncpg.Pool, blobs: FilesystemBlobStore) -> dict[str, list[str]]:
    """Old and recent rows of every kind; returns the blob keys, old and kept."""
    await ensure_day_partitions(pool, OLD_DAYS[0], KEPT_DAYS[-1])
    keys: dict[str, list[str]] = {"old": [], "kept": []}
    async with pool.acquire() as conn:
        for day in OLD_DAYS + KEPT_DAYS:
            await _reading(conn, _at(day))
        for ts in (_at(date(2027, 6, 16)), NOW - timedelta(days=90)):  # no partition: default
            await _reading(conn, ts)
        for start in (NOW - timedelta(days=31), NOW - timedelta(days=29)):
            await conn.execute(
                "INSERT INTO readings_1m (device_id, field, window_start, window_end, count, "
                "min, max, sum, mean) VALUES ('d1', 'pir.x', $1, $2, 1, 1, 1, 1, 1)",
                start,
                start + timedelta(minutes=1),
            )
        for fired, cleared in (
            (NOW - timedelta(days=60), NOW - timedelta(days=59)),  # cleared long ago: goes
            (NOW - timedelta(days=60), None),  # still open: stays
            (NOW - timedelta(days=60), NOW - timedelta(days=2)),  # cleared lately: stays
        ):
            await conn.execute(
                "INSERT INTO alerts (alert_id, rule_id, rule_version, rule_name, device_id, "
                "severity, started_at, fired_at, cleared_at, fired_event_id) "
                "VALUES ($1, 'r', 1, 'r', 'd1', 'info', $2, $2, $3, 'e')",
                uuid.uuid4(),
                fired,
                cleared,
            )
        for age, kind in ((40, "old"), (10, "kept")):
            key = await _audio(conn, blobs, NOW - timedelta(days=age))
            keys[kind].append(key)
            keys[kind] += await _request(conn, blobs, NOW - timedelta(days=age), frames=3)
        keys["kept"] += await _request(conn, blobs, NOW - timedelta(days=40), "processing", 1)
    return keys


async def _blob(blobs: FilesystemBlobStore, key: str) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"media bytes"

    await blobs.put(key, chunks(), max_bytes=1024)
    return key


async def _audio(conn: asyncpg.Connection, blobs: FilesystemBlobStore, end: datetime) -> str:
    key = await _blob(blobs, f"audio/d1/{uuid.uuid4()}.wav")
    await conn.execute(
        "INSERT INTO audio_chunks (chunk_id, device_id, point_id, register_id, start_ts, end_ts, "
        "duration_sec, codec, sample_rate, channels, file_path, file_size_bytes, sha256, "
        "content_type, storage) VALUES ($1, 'd1', $2, $2, $3, $4, 60, 'pcm', 8000, 1, $5, 11, "
        "$6, 'audio/wav', 'filesystem')",
        uuid.uuid4(),
        uuid.uuid4(),
        end - timedelta(minutes=1),
        end,
        key,
        "0" * 64,
    )
    return key


async def _request(
    conn: asyncpg.Connection,
    blobs: FilesystemBlobStore,
    created: datetime,
    status: str = "completed",
    frames: int = 1,
) -> list[str]:
    request_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO media_requests (request_id, device_id, source_type, status, "
        "frames_requested, created_at) VALUES ($1, 'd1', 'upload', $2, $3, $4)",
        request_id,
        status,
        frames,
        created,
    )
    keys = []
    for seq in range(frames):
        key = await _blob(blobs, f"frames/d1/{request_id}/{seq}.jpg")
        await conn.execute(
            "INSERT INTO media_frames (frame_id, request_id, seq, device_id, object_key, storage, "
            "content_type, size_bytes, sha256, captured_at) "
            "VALUES ($1, $2, $3, 'd1', $4, 'filesystem', 'image/jpeg', 11, $5, $6)",
            uuid.uuid4(),
            request_id,
            seq,
            key,
            "0" * 64,
            created,
        )
        keys.append(key)
    return keys


async def _partitions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass"
    )
    return {row["relname"] for row in rows}


def _name(day: date) -> str:
    return f"readings_{day:%Y%m%d}"


async def test_the_maintenance_pass_drops_old_partitions_rows_and_blobs_and_keeps_recent_ones(
    own_db: Settings, pool: asyncpg.Pool
) -> None:
    blobs = FilesystemBlobStore(own_db.blob.root)
    await blobs.open()
    keys = await _fill(pool, blobs)

    report = await RetentionKeeper(own_db, lambda: NOW).run()

    assert report is not None
    async with pool.acquire() as conn:
        partitions = await _partitions(conn)
        assert not {_name(day) for day in OLD_DAYS} & partitions
        assert {_name(day) for day in KEPT_DAYS} <= partitions
        assert {_name(day) for day in OLD_DAYS} <= set(report.partitions)
        days = {row["ts"].date() for row in await conn.fetch("SELECT ts FROM readings")}
        assert days == {*KEPT_DAYS, date(2027, 6, 16)}  # the old row of the default one went
        assert report.default_readings == 1
        windows = await conn.fetch("SELECT window_start FROM readings_1m")
        assert [row["window_start"] for row in windows] == [NOW - timedelta(days=29)]
        alerts = await conn.fetch("SELECT cleared_at FROM alerts ORDER BY cleared_at NULLS FIRST")
        assert [row["cleared_at"] for row in alerts] == [None, NOW - timedelta(days=2)]
        assert await conn.fetchval("SELECT count(*) FROM audio_chunks") == 1
        statuses = await conn.fetch("SELECT status FROM media_requests ORDER BY status")
        assert [row["status"] for row in statuses] == ["completed", "processing"]
        assert await conn.fetchval("SELECT count(*) FROM media_frames") == 3 + 1
    for key in keys["old"]:
        assert await blobs.size_of(key) is None, key
    for key in keys["kept"]:
        assert await blobs.size_of(key) is not None, key
    assert (report.audio_chunks, report.media_requests, report.media_frames) == (1, 1, 3)
    assert report.blobs == len(keys["old"]) == 4


async def test_the_cli_dry_run_changes_nothing_and_yes_removes_what_it_listed(
    own_db: Settings, pool: asyncpg.Pool
) -> None:
    blobs = FilesystemBlobStore(own_db.blob.root)
    await blobs.open()
    keys = await _fill(pool, blobs)
    now = NOW.isoformat()
    before = await retention.plan(pool, retention.cutoffs(own_db.postgres, NOW))

    listed = run_cli(own_db, "retention", "apply", "--dry-run", "--now", now)

    assert "readings partitions: " in listed and _name(OLD_DAYS[0]) in listed
    assert "cleared alerts: 1" in listed and "blobs: 4" in listed
    assert await retention.plan(pool, retention.cutoffs(own_db.postgres, NOW)) == before
    assert all([await blobs.size_of(key) is not None for key in keys["old"]])

    removed = run_cli(own_db, "retention", "apply", "--yes", "--now", now)

    assert "removed:" in removed
    after = await retention.plan(pool, retention.cutoffs(own_db.postgres, NOW))
    assert after == retention.RetentionReport()
    assert all([await blobs.size_of(key) is None for key in keys["old"]])
    async with pool.acquire() as conn:
        assert {_name(day) for day in KEPT_DAYS} <= await _partitions(conn)

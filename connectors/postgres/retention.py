"""Retention of what Postgres stores: old readings partitions, rollups, alerts, media and blobs.

Each kind has its own setting (``FLEET_POSTGRES__*RETENTION_DAYS``; 0 keeps it forever), and
"now" is given (the worker's clock, or the caller's):

* ``readings``: a day partition (``readings_YYYYMMDD``) is dropped once its whole day is older
  than ``retention_days`` (``DROP TABLE``: no row-by-row delete, no bloat); rows that wait in
  ``readings_default`` are deleted by their ``ts``.
* ``readings_1m``: rows whose ``window_start`` is older.
* ``alerts``: cleared alerts whose ``cleared_at`` is older; an open alert stays however old.
* media: audio chunks whose ``end_ts`` is older, and finished media requests (completed or
  failed) created before the cut, with their frames. Their blobs go first, in batches: a row is
  deleted only after its blob is (deleting a blob already gone is no error), so a failed pass
  leaves rows to retry and never a blob that no row names.

:func:`plan` counts what :func:`apply` would remove (``fleetstream retention apply --dry-run``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import asyncpg

from connectors.blob.base import BlobStore
from schemas.settings import PostgresSettings

__all__ = ["Cutoffs", "RetentionReport", "apply", "cutoffs", "plan"]

BATCH: Final = 500
"""Media rows (and their blobs) per batch; each batch is its own transaction."""
_PARTITION: Final = re.compile(r"\Areadings_(\d{8})\Z")


@dataclass(frozen=True)
class Cutoffs:
    """Everything older than its cut goes; None keeps that kind forever."""

    readings: datetime | None
    rollups: datetime | None
    alerts: datetime | None
    media: datetime | None


def _cut(now: datetime, days: int) -> datetime | None:
    return None if days == 0 else now - timedelta(days=days)


def cutoffs(settings: PostgresSettings, now: datetime) -> Cutoffs:
    """The cuts for ``now`` (aware) from the retention settings."""
    return Cutoffs(
        readings=_cut(now, settings.retention_days),
        rollups=_cut(now, settings.rollup_retention_days),
        alerts=_cut(now, settings.alert_retention_days),
        media=_cut(now, settings.media_retention_days),
    )


@dataclass
class RetentionReport:
    """What a pass removed (or, from :func:`plan`, would remove)."""

    partitions: list[str] = field(default_factory=list)
    default_readings: int = 0
    rollups: int = 0
    alerts: int = 0
    audio_chunks: int = 0
    media_requests: int = 0
    media_frames: int = 0
    blobs: int = 0

    def lines(self) -> list[str]:
        dropped = ", ".join(self.partitions) or "none"
        return [
            f"readings partitions: {len(self.partitions)} ({dropped})",
            f"readings rows in readings_default: {self.default_readings}",
            f"readings_1m rows: {self.rollups}",
            f"cleared alerts: {self.alerts}",
            f"audio chunks: {self.audio_chunks}",
            f"media requests: {self.media_requests} (frames: {self.media_frames})",
            f"blobs: {self.blobs}",
        ]


async def old_partitions(conn: asyncpg.Connection, cut: datetime) -> list[str]:
    """Day partitions of ``readings`` whose whole day ends at or before ``cut``, oldest first."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'readings'::regclass"
    )
    old = []
    for row in names:
        match = _PARTITION.match(row["relname"])
        if match is None:
            continue
        day = date(int(match[1][:4]), int(match[1][4:6]), int(match[1][6:]))
        if datetime.combine(day + timedelta(days=1), time(), UTC) <= cut:
            old.append(row["relname"])
    return sorted(old)


_AUDIO: Final = "FROM audio_chunks WHERE end_ts < $1"
_REQUESTS: Final = "FROM media_requests WHERE created_at < $1 AND status IN ('completed', 'failed')"
_FRAMES: Final = f"FROM media_frames WHERE request_id IN (SELECT request_id {_REQUESTS})"


async def plan(pool: asyncpg.Pool, cuts: Cutoffs) -> RetentionReport:
    """What :func:`apply` would remove now (nothing is changed)."""
    report = RetentionReport()
    async with pool.acquire() as conn:
        if cuts.readings is not None:
            report.partitions = await old_partitions(conn, cuts.readings)
            report.default_readings = await conn.fetchval(
                "SELECT count(*) FROM readings_default WHERE ts < $1", cuts.readings
            )
        if cuts.rollups is not None:
            report.rollups = await conn.fetchval(
                "SELECT count(*) FROM readings_1m WHERE window_start < $1", cuts.rollups
            )
        if cuts.alerts is not None:
            report.alerts = await conn.fetchval(
                "SELECT count(*) FROM alerts WHERE cleared_at < $1", cuts.alerts
            )
        if cuts.media is not None:
            report.audio_chunks = await conn.fetchval(f"SELECT count(*) {_AUDIO}", cuts.media)
            report.media_requests = await conn.fetchval(f"SELECT count(*) {_REQUESTS}", cuts.media)
            report.media_frames = await conn.fetchval(f"SELECT count(*) {_FRAMES}", cuts.media)
            report.blobs = report.audio_chunks + report.media_frames
    return report


async def apply(pool: asyncpg.Pool, blobs: BlobStore, cuts: Cutoffs) -> RetentionReport:
    """Remove what is past its retention (see the module docstring); returns what went."""
    report = RetentionReport()
    async with pool.acquire() as conn:
        if cuts.readings is not None:
            for name in await old_partitions(conn, cuts.readings):
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')  # a name _PARTITION matched
                report.partitions.append(name)
            report.default_readings = _count(
                await conn.execute("DELETE FROM readings_default WHERE ts < $1", cuts.readings)
            )
        if cuts.rollups is not None:
            report.rollups = _count(
                await conn.execute("DELETE FROM readings_1m WHERE window_start < $1", cuts.rollups)
            )
        if cuts.alerts is not None:
            report.alerts = _count(
                await conn.execute("DELETE FROM alerts WHERE cleared_at < $1", cuts.alerts)
            )
        if cuts.media is not None:
            await _expire_audio(conn, blobs, cuts.media, report)
            await _expire_requests(conn, blobs, cuts.media, report)
    return report


def _count(status: str) -> int:
    """Rows of a ``DELETE n`` command status."""
    return int(status.rsplit(" ", 1)[-1])


async def _expire_audio(
    conn: asyncpg.Connection, blobs: BlobStore, cut: datetime, report: RetentionReport
) -> None:
    while rows := await conn.fetch(f"SELECT chunk_id, file_path {_AUDIO} LIMIT {BATCH}", cut):
        for row in rows:
            await blobs.delete(row["file_path"])
            report.blobs += 1
        ids = [row["chunk_id"] for row in rows]
        await conn.execute("DELETE FROM audio_chunks WHERE chunk_id = ANY($1)", ids)
        report.audio_chunks += len(ids)


async def _expire_requests(
    conn: asyncpg.Connection, blobs: BlobStore, cut: datetime, report: RetentionReport
) -> None:
    while requests := await conn.fetch(f"SELECT request_id {_REQUESTS} LIMIT {BATCH}", cut):
        ids = [row["request_id"] for row in requests]
        frames = await conn.fetch(
            "SELECT object_key FROM media_frames WHERE request_id = ANY($1)", ids
        )
        for frame in frames:
            await blobs.delete(frame["object_key"])
            report.blobs += 1
        # media_frames reference their request ON DELETE CASCADE
        await conn.execute("DELETE FROM media_requests WHERE request_id = ANY($1)", ids)
        report.media_requests += len(ids)
        report.media_frames += len(frames)

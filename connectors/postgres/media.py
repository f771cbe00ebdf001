"""Media metadata in Postgres: ``audio_chunks`` (seed 004), ``media_requests`` and
``media_frames`` (seed 003); see migration 0005.

Rows are written only after their bytes are durable in the blob store. A chunk is unique per
(device_id, start_ts, sha256): :meth:`MediaStore.add_chunk` returns the row already stored for a
repeated upload instead of a second one. Errors that mean "Postgres is not reachable" become
:class:`~connectors.postgres.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import asyncpg

from connectors.postgres.errors import unavailable_as_error
from connectors.postgres.last_seen import update_last_seen


@dataclass(frozen=True)
class AudioChunk:
    chunk_id: uuid.UUID
    device_id: str
    point_id: uuid.UUID
    register_id: uuid.UUID
    start_ts: datetime
    end_ts: datetime
    duration_sec: int
    codec: str
    sample_rate: int
    channels: int
    file_path: str
    file_size_bytes: int
    sha256: str
    content_type: str
    storage: str
    status: str = "UPLOADED"
    created_at: datetime | None = None


@dataclass(frozen=True)
class MediaRequest:
    request_id: uuid.UUID
    device_id: str
    source_type: str
    status: str
    frames_requested: int
    source: str | None = None
    capture_mode: str | None = None
    fps: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    frames_stored: int = 0
    error: str | None = None
    deadline_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class MediaFrame:
    frame_id: uuid.UUID
    request_id: uuid.UUID
    seq: int
    device_id: str
    object_key: str
    storage: str
    content_type: str
    size_bytes: int
    sha256: str
    captured_at: datetime
    original_filename: str | None = None


_CHUNK_COLUMNS = [f.name for f in fields(AudioChunk)]
_CHUNK_INSERTED = _CHUNK_COLUMNS[:-2]  # status and created_at take their defaults
_FRAME_COLUMNS = [f.name for f in fields(MediaFrame)]
_REQUEST_COLUMNS = ", ".join(
    "meta::text AS meta" if f.name == "meta" else f.name for f in fields(MediaRequest)
)
# The SQL below interpolates only these constant column lists and $n placeholders (ruff S608).
_INSERT_CHUNK = (
    f"INSERT INTO audio_chunks ({', '.join(_CHUNK_INSERTED)}) "  # noqa: S608
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_CHUNK_INSERTED) + 1))}) "
    "ON CONFLICT (device_id, start_ts, sha256) DO NOTHING "
    f"RETURNING {', '.join(_CHUNK_COLUMNS)}"
)
_SELECT_SAME_CHUNK = (
    f"SELECT {', '.join(_CHUNK_COLUMNS)} FROM audio_chunks "  # noqa: S608
    "WHERE device_id = $1 AND start_ts = $2 AND sha256 = $3"
)
_INSERT_FRAME = (
    f"INSERT INTO media_frames ({', '.join(_FRAME_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_FRAME_COLUMNS) + 1))})"
)
_SELECT_REQUEST = f"SELECT {_REQUEST_COLUMNS} FROM media_requests WHERE request_id = $1"  # noqa: S608
_SELECT_FRAMES = (
    f"SELECT {', '.join(_FRAME_COLUMNS)} FROM media_frames "  # noqa: S608
    "WHERE request_id = $1 ORDER BY seq"
)


class MediaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add_chunk(self, chunk: AudioChunk) -> tuple[AudioChunk, bool]:
        """Insert ``chunk``; for a repeat of a stored one (same device, start_ts and sha256)
        return the stored row instead. The flag says whether this call inserted it."""
        args = [getattr(chunk, name) for name in _CHUNK_INSERTED]
        async with unavailable_as_error():
            row = await self._pool.fetchrow(_INSERT_CHUNK, *args)
            if row is not None:
                return AudioChunk(**dict(row)), True
            row = await self._pool.fetchrow(
                _SELECT_SAME_CHUNK, chunk.device_id, chunk.start_ts, chunk.sha256
            )
        if row is None:  # deleted between the two statements: store it after all
            return await self.add_chunk(chunk)
        return AudioChunk(**dict(row)), False

    async def mark_chunk_queued(self, chunk_id: uuid.UUID) -> None:
        """UPLOADED → QUEUED once its event is in Kafka (later states are left alone)."""
        async with unavailable_as_error():
            await self._pool.execute(
                "UPDATE audio_chunks SET status = 'QUEUED', updated_at = now() "
                "WHERE chunk_id = $1 AND status = 'UPLOADED'",
                chunk_id,
            )

    async def device_seen(self, device_id: str, at: datetime) -> None:
        """Move the device's ``last_seen_at`` forward (seed 004 did so on every upload)."""
        async with unavailable_as_error():
            await update_last_seen(self._pool, {device_id: at})

    async def create_request(self, request: MediaRequest) -> None:
        async with unavailable_as_error():
            await self._pool.execute(
                "INSERT INTO media_requests (request_id, device_id, source_type, status, source, "
                "capture_mode, frames_requested, fps, meta, deadline_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)",
                request.request_id,
                request.device_id,
                request.source_type,
                request.status,
                request.source,
                request.capture_mode,
                request.frames_requested,
                request.fps,
                json.dumps(request.meta),
                request.deadline_at,
            )

    async def add_frames(self, request_id: uuid.UUID, frames: Sequence[MediaFrame]) -> None:
        """Record stored frames of a request and count them, in one transaction."""
        if not frames:
            return
        rows = [tuple(getattr(frame, name) for name in _FRAME_COLUMNS) for frame in frames]
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT_FRAME, rows)
            await conn.execute(
                "UPDATE media_requests SET frames_stored = frames_stored + $2, "
                "updated_at = now() WHERE request_id = $1",
                request_id,
                len(frames),
            )

    async def set_status(
        self, request_id: uuid.UUID, status: str, error: str | None = None
    ) -> None:
        """Move a request to ``status``; ``completed``/``failed`` also set ``completed_at``."""
        async with unavailable_as_error():
            await self._pool.execute(
                "UPDATE media_requests SET status = $2, error = $3, updated_at = now(), "
                "completed_at = CASE WHEN $2 IN ('completed', 'failed') THEN now() END "
                "WHERE request_id = $1",
                request_id,
                status,
                error,
            )

    async def get_request(
        self, request_id: uuid.UUID
    ) -> tuple[MediaRequest, list[MediaFrame]] | None:
        async with unavailable_as_error():
            row = await self._pool.fetchrow(_SELECT_REQUEST, request_id)
            if row is None:
                return None
            frames = await self._pool.fetch(_SELECT_FRAMES, request_id)
        values = dict(row)
        values["meta"] = json.loads(values["meta"])
        return MediaRequest(**values), [MediaFrame(**dict(frame)) for frame in frames]

"""Seed 004 audio chunks: ``POST /api/v1/chunks`` (multipart), stored, recorded, announced.

Order of a chunk's life, each step only after the one before is durable:

1. the form's fields are checked (they must come before ``chunk_file``: the object key needs
   ``point_id``, ``register_id`` and ``start_ts``; curl ``-F`` and every HTTP library send
   fields in the order given, files last);
2. the bytes stream into the blob store at seed 004's path (SHA-256 and the size limit while
   streaming; past ``FLEET_MEDIA__MAX_AUDIO_BYTES`` → 413 and nothing is kept);
3. the ``audio_chunks`` row is written, status UPLOADED;
4. the ``fleet.media.v1`` event is produced and acked (``acks=all``), status QUEUED;
5. the answer: ``{"status": "ok", "chunk_id", "stored_path", "queued": true}``.

A retry of the same chunk (same device, ``start_ts`` and bytes) finds the stored row: the copy
just written is deleted, the answer names the stored chunk, and its event is produced again
only if the first attempt never got it acked (row still UPLOADED). A failure at 3 or 4 is a 503
that the device retries.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from api.auth import require_device
from api.media.context import Media
from api.media.errors import invalid, too_large
from api.media.multipart import FormReader
from api.media.sniff import audio_type, peek
from api.problems import ProblemError
from connectors.blob.base import StoredBlob
from connectors.blob.errors import BlobStoreUnavailable, BlobTooLarge
from connectors.blob.layout import audio_chunk_key
from connectors.kafka.errors import KafkaUnavailable
from connectors.postgres.devices import DatabaseUnavailable
from connectors.postgres.media import AudioChunk
from schemas.devices import Device
from schemas.events import new_event_id
from schemas.media import MediaEvent
from schemas.readings import DEVICE_ID_PATTERN

FIELDS = ("point_id", "register_id", "device_id", "start_ts", "end_ts", "codec", "sample_rate",
          "channels")  # fmt: skip
FILE_FIELD = "chunk_file"
MAX_FIELD_BYTES = 256
MAX_DURATION = timedelta(days=1)
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_CODEC = re.compile(r"[A-Za-z0-9._-]{1,32}")


@dataclass(frozen=True)
class ChunkForm:
    point_id: uuid.UUID
    register_id: uuid.UUID
    device_id: str
    start_ts: datetime
    end_ts: datetime
    codec: str
    sample_rate: int
    channels: int

    @property
    def duration_sec(self) -> int:
        return round((self.end_ts - self.start_ts).total_seconds())


def parse_fields(fields: dict[str, str], now: datetime, max_ahead: timedelta) -> ChunkForm:
    """Seed 004's fields, checked; 422 naming the first field that is missing or wrong."""
    for name in FIELDS:
        if name not in fields:
            raise invalid(name, f"missing (every field must come before {FILE_FIELD})", "missing")
    device_id = fields["device_id"]
    if not _DEVICE_ID.match(device_id):
        raise invalid("device_id", "not a device id")
    start, end = _timestamp(fields, "start_ts"), _timestamp(fields, "end_ts")
    if end <= start:
        raise invalid("end_ts", "must be after start_ts")
    if end - start > MAX_DURATION:
        raise invalid("end_ts", "a chunk may span at most a day")
    if end > now + max_ahead:
        raise invalid("end_ts", "is in the future")
    codec = fields["codec"]
    if not _CODEC.fullmatch(codec):
        raise invalid("codec", "1-32 characters of letters, digits, '.', '_' or '-'")
    return ChunkForm(
        point_id=_uuid(fields, "point_id"),
        register_id=_uuid(fields, "register_id"),
        device_id=device_id,
        start_ts=start,
        end_ts=end,
        codec=codec,
        sample_rate=_integer(fields, "sample_rate", 1, 768_000),
        channels=_integer(fields, "channels", 1, 64),
    )


def check_placement(principal: Device | None, form: ChunkForm) -> None:
    """403 when the credentials are another device's, or when the registry pins the device to
    another point or register (seed 004's ``point_id``/``register_id`` in its metadata)."""
    require_device(principal, form.device_id)
    if principal is None:
        return
    for name in ("point_id", "register_id"):
        pinned = principal.metadata.get(name)
        if pinned is not None and str(pinned).lower() != str(getattr(form, name)):
            raise ProblemError(
                403,
                "Forbidden",
                f"device {form.device_id} is registered for another {name}",
                errors=[{"field": name, "message": "not the device's", "type": "forbidden"}],
            )


async def ingest_chunk(
    media: Media, reader: FormReader, principal: Device | None, now: datetime
) -> dict[str, Any]:
    """Read the form, store the chunk, record and announce it; the seed 004 answer."""
    form, chunk_id, stored = await _read(media, reader, principal, now)
    chunk = AudioChunk(
        chunk_id=chunk_id,
        device_id=form.device_id,
        point_id=form.point_id,
        register_id=form.register_id,
        start_ts=form.start_ts,
        end_ts=form.end_ts,
        duration_sec=form.duration_sec,
        codec=form.codec,
        sample_rate=form.sample_rate,
        channels=form.channels,
        file_path=stored.key,
        file_size_bytes=stored.size,
        sha256=stored.sha256,
        content_type=stored.content_type,
        storage=media.storage,
    )
    try:
        row, created = await media.store.add_chunk(chunk)
    except DatabaseUnavailable as exc:
        await _forget(media, stored.key)
        raise media.unavailable(exc) from exc
    if not created:
        await _forget(media, stored.key)  # the same chunk is stored already
    if row.status == "UPLOADED":
        try:
            await media.announcer.announce([chunk_event(row, received_at=now)])
            await media.store.mark_chunk_queued(row.chunk_id)
        except (KafkaUnavailable, DatabaseUnavailable) as exc:
            raise media.unavailable(exc) from exc
    await media.seen(row.device_id, now)
    return {
        "status": "ok",
        "chunk_id": str(row.chunk_id),
        "stored_path": row.file_path,
        "queued": True,
    }


async def _read(
    media: Media, reader: FormReader, principal: Device | None, now: datetime
) -> tuple[ChunkForm, uuid.UUID, StoredBlob]:
    fields: dict[str, str] = {}
    form: ChunkForm | None = None
    chunk_id = uuid.UUID(new_event_id())  # a UUIDv7: chunks sort by arrival
    stored: StoredBlob | None = None
    try:
        while (part := await reader.next_part()) is not None:
            if part.name in FIELDS and part.filename is None:
                if part.name in fields:
                    raise invalid(part.name, "given twice")
                fields[part.name] = (await reader.text(part, MAX_FIELD_BYTES)).strip()
            elif part.name == FILE_FIELD and stored is None:
                ahead = timedelta(seconds=media.settings.api.timestamp_max_ahead_s)
                form = parse_fields(fields, now, ahead)
                check_placement(principal, form)
                stored = await _store(media, reader, form, chunk_id)
            elif part.name == FILE_FIELD:
                raise invalid(FILE_FIELD, "one file per request")
            else:
                raise invalid(part.name, "unknown field")
    except BaseException:
        if stored is not None:
            await _forget(media, stored.key)
        raise
    if form is None or stored is None:
        raise invalid(FILE_FIELD, "missing", "missing")
    return form, chunk_id, stored


async def _store(
    media: Media, reader: FormReader, form: ChunkForm, chunk_id: uuid.UUID
) -> StoredBlob:
    limit = media.settings.media.max_audio_bytes
    head, chunks = await peek(reader.data())
    kind = audio_type(head, form.codec)
    key = audio_chunk_key(form.point_id, form.register_id, form.start_ts, chunk_id, kind.ext)
    try:
        return await media.blob.put(key, chunks, max_bytes=limit, content_type=kind.content_type)
    except BlobTooLarge as exc:
        await reader.drain(limit)
        raise too_large(FILE_FIELD, limit) from exc
    except BlobStoreUnavailable as exc:
        raise media.unavailable(exc) from exc


def chunk_event(chunk: AudioChunk, *, received_at: datetime) -> MediaEvent:
    return MediaEvent(
        event_id=str(chunk.chunk_id),
        device_id=chunk.device_id,
        kind="audio_chunk",
        source="upload",
        storage="s3" if chunk.storage == "s3" else "filesystem",
        object_key=chunk.file_path,
        content_type=chunk.content_type,
        size_bytes=chunk.file_size_bytes,
        sha256=chunk.sha256,
        captured_at=chunk.start_ts,
        ended_at=chunk.end_ts,
        received_at=received_at,
        metadata={
            "point_id": str(chunk.point_id),
            "register_id": str(chunk.register_id),
            "codec": chunk.codec,
            "sample_rate": chunk.sample_rate,
            "channels": chunk.channels,
            "duration_sec": chunk.duration_sec,
        },
    )


async def _forget(media: Media, key: str) -> None:
    await media.forget(key)


def _timestamp(fields: dict[str, str], name: str) -> datetime:
    text = fields[name]
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise invalid(name, "not an ISO 8601 date-time") from exc
    if value.tzinfo is None or value.utcoffset() is None:
        raise invalid(name, "needs a time zone (e.g. Z or +01:00)")
    return value


def _uuid(fields: dict[str, str], name: str) -> uuid.UUID:
    try:
        return uuid.UUID(fields[name])
    except ValueError as exc:
        raise invalid(name, "not a UUID") from exc


def _integer(fields: dict[str, str], name: str, low: int, high: int) -> int:
    text = fields[name]
    if not text.isascii() or not text.isdigit():
        raise invalid(name, "not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}")
    return value

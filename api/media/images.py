"""Seed 003 image uploads: ``POST /api/v1/ingest/upload`` (multipart ``camera_id``, one or more
``files``, optional ``meta`` JSON object).

``camera_id`` is the device id (its token authenticates the request) and must come before the
files: their keys are ``frames/<camera_id>/...``. Each file's type is taken from its first bytes
(JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC, AVIF), never from its name or Content-Type: anything
else is 415 naming ``files[i]``. A request is all-or-nothing: on any error the files already
stored are deleted. Then the request and its frames are recorded (``media_requests``,
``media_frames``), one ``fleet.media.v1`` event per frame is produced and acked, and the request
is ``completed``. The answer is the request's status document (as ``GET /status/{id}``).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from api.auth import require_device
from api.media.context import Media
from api.media.errors import invalid, too_large, unsupported
from api.media.multipart import FormReader, Part
from api.media.sniff import image_type, peek
from api.problems import ProblemError
from connectors.blob.errors import BlobStoreUnavailable, BlobTooLarge
from connectors.blob.layout import frame_key
from connectors.kafka.errors import KafkaUnavailable
from connectors.postgres.devices import DatabaseUnavailable
from connectors.postgres.media import MediaFrame, MediaRequest
from schemas.devices import Device, check_metadata
from schemas.events import new_event_id
from schemas.media import MediaEvent, MediaSource
from schemas.readings import DEVICE_ID_PATTERN

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_META_BYTES = 8192
MAX_FILENAME = 255
UPLOAD_FINISH = timedelta(seconds=60)
"""An upload's request row is failed if it is not completed this long after it was made."""


@dataclass
class _Upload:
    request_id: uuid.UUID
    camera_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    frames: list[MediaFrame] = field(default_factory=list)


def parse_camera_id(text: str, principal: Device | None) -> str:
    if not _DEVICE_ID.match(text):
        raise invalid("camera_id", "not a device id")
    require_device(principal, text)
    return text


def parse_meta(text: str, name: str = "meta") -> dict[str, Any]:
    """A JSON object within the registry's metadata limits (8 KiB, 8 levels, no control
    characters); 422 naming the field."""
    try:
        meta = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise invalid(name, "not valid JSON") from exc
    if not isinstance(meta, dict):
        raise invalid(name, "must be a JSON object")
    try:
        check_metadata(meta)
    except ValueError as exc:
        raise invalid(name, str(exc)) from exc
    return meta


async def ingest_upload(
    media: Media, reader: FormReader, principal: Device | None, now: datetime
) -> dict[str, Any]:
    upload = _Upload(request_id=uuid.UUID(new_event_id()))
    try:
        await _read(media, reader, principal, upload, now)
    except BaseException:
        for frame in upload.frames:
            await media.forget(frame.object_key)
        raise
    if upload.camera_id is None:
        raise invalid("camera_id", "missing", "missing")
    if not upload.frames:
        raise invalid("files", "at least one file is needed", "missing")
    request = MediaRequest(
        request_id=upload.request_id,
        device_id=upload.camera_id,
        source_type="upload",
        status="processing",
        frames_requested=len(upload.frames),
        meta=upload.meta,
        deadline_at=now + UPLOAD_FINISH,
    )
    try:
        await media.store.create_request(request)
        await media.store.add_frames(request.request_id, upload.frames)
        await media.announcer.announce(
            [frame_event(frame, upload.meta, "upload", now) for frame in upload.frames]
        )
        await media.store.set_status(request.request_id, "completed")
    except (DatabaseUnavailable, KafkaUnavailable) as exc:
        await _give_up(media, request.request_id, exc)
        raise media.unavailable(exc) from exc
    media.count_frames("upload", len(upload.frames))
    await media.seen(request.device_id, now)
    found = await media.store.get_request(request.request_id)
    if found is None:  # pragma: no cover - deleted by an operator in between
        raise ProblemError(500, "Internal error", "the request vanished")
    return status_document(*found, now=now)


async def _read(
    media: Media, reader: FormReader, principal: Device | None, upload: _Upload, now: datetime
) -> None:
    limits = media.settings.media
    while (part := await reader.next_part()) is not None:
        if part.name == "camera_id" and part.filename is None and upload.camera_id is None:
            upload.camera_id = parse_camera_id(await reader.text(part, 200), principal)
        elif part.name == "meta" and part.filename is None and part.index == 0:
            upload.meta = parse_meta(await reader.text(part, MAX_META_BYTES))
        elif part.name == "files":
            if upload.camera_id is None:
                raise invalid("camera_id", "missing (it must come before the files)", "missing")
            if part.index >= limits.max_files_per_upload:
                raise invalid("files", f"at most {limits.max_files_per_upload} files per request")
            upload.frames.append(await _store(media, reader, part, upload, now))
        elif part.name in ("camera_id", "meta"):
            raise invalid(part.name, "given twice, or as a file")
        else:
            raise invalid(part.name, "unknown field")


async def _store(
    media: Media, reader: FormReader, part: Part, upload: _Upload, now: datetime
) -> MediaFrame:
    assert upload.camera_id is not None  # noqa: S101 - checked by the caller
    limit = media.settings.media.max_image_bytes
    head, chunks = await peek(reader.data())
    kind = image_type(head)
    if kind is None:
        raise unsupported(part.label, "not an image (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC, AVIF)")
    frame_id = uuid.UUID(new_event_id())
    key = frame_key(upload.camera_id, now, frame_id, kind.ext)
    try:
        stored = await media.blob.put(key, chunks, max_bytes=limit, content_type=kind.content_type)
    except BlobTooLarge as exc:
        await reader.drain(limit)
        raise too_large(part.label, limit) from exc
    except BlobStoreUnavailable as exc:
        raise media.unavailable(exc) from exc
    return MediaFrame(
        frame_id=frame_id,
        request_id=upload.request_id,
        seq=part.index,
        device_id=upload.camera_id,
        object_key=stored.key,
        storage=media.storage,
        content_type=stored.content_type,
        size_bytes=stored.size,
        sha256=stored.sha256,
        captured_at=now,
        original_filename=_filename(part),
    )


def _filename(part: Part) -> str | None:
    """The client's file name, kept for reference only: control characters (Postgres refuses
    NUL) and anything past 255 characters dropped."""
    if not part.filename:
        return None
    return _CONTROL.sub("", part.filename)[:MAX_FILENAME] or None


async def _give_up(media: Media, request_id: uuid.UUID, exc: Exception) -> None:
    """Mark the request failed (best effort: Postgres may be what failed). Its frames stay:
    their events may have reached Kafka before the error."""
    try:
        await media.store.set_status(request_id, "failed", f"not confirmed: {type(exc).__name__}")
    except DatabaseUnavailable:
        return


def frame_event(
    frame: MediaFrame, meta: dict[str, Any], source: MediaSource, received_at: datetime
) -> MediaEvent:
    metadata: dict[str, Any] = {"meta": meta, "seq": frame.seq}
    if frame.original_filename:
        metadata["original_filename"] = frame.original_filename
    return MediaEvent(
        event_id=str(frame.frame_id),
        device_id=frame.device_id,
        kind="image",
        source=source,
        storage="s3" if frame.storage == "s3" else "filesystem",
        object_key=frame.object_key,
        content_type=frame.content_type,
        size_bytes=frame.size_bytes,
        sha256=frame.sha256,
        captured_at=frame.captured_at,
        received_at=received_at,
        request_id=str(frame.request_id),
        metadata=metadata,
    )


def status_document(
    request: MediaRequest, frames: list[MediaFrame], *, now: datetime
) -> dict[str, Any]:
    """A request as ``GET /api/v1/ingest/status/{request_id}`` shows it. A capture still
    pending or processing after its deadline (the instance running it stopped) is failed."""
    status, error = request.status, request.error
    if status in ("pending", "processing") and request.deadline_at and now > request.deadline_at:
        status, error = "failed", "did not finish in time (the API instance serving it stopped)"
    return {
        "request_id": str(request.request_id),
        "source_type": request.source_type,
        "camera_id": request.device_id,
        "status": status,
        "error": error,
        "source": request.source,
        "capture_mode": request.capture_mode,
        "fps": request.fps,
        "frames_requested": request.frames_requested,
        "frames_stored": request.frames_stored,
        "meta": request.meta,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
        "completed_at": request.completed_at,
        "frames": [
            {
                "frame_id": str(frame.frame_id),
                "seq": frame.seq,
                "object_key": frame.object_key,
                "storage": frame.storage,
                "content_type": frame.content_type,
                "size_bytes": frame.size_bytes,
                "sha256": frame.sha256,
                "captured_at": frame.captured_at,
                "original_filename": frame.original_filename,
            }
            for frame in frames
        ],
    }

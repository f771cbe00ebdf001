"""Media routes: seed 004's audio chunks and seed 003's image uploads and RTSP captures.

* ``POST /api/v1/chunks``: one audio chunk (multipart: ``point_id``, ``register_id``,
  ``device_id``, ``start_ts``, ``end_ts``, ``codec``, ``sample_rate``, ``channels``, then
  ``chunk_file``), Bearer device token; 200 ``{"status": "ok", "chunk_id", "stored_path",
  "queued": true}`` once stored, recorded and announced (:mod:`api.media.audio`).
* ``POST /api/v1/ingest/upload``: ``camera_id``, then one or more ``files``, optional ``meta``
  (JSON object); 200 with the request's status document (:mod:`api.media.images`).
* ``POST /api/v1/ingest/rtsp``: JSON ``{"rtsp_url", "camera_id", "capture_mode", "frame_count",
  "fps", "meta"}``; 202 ``{"request_id", "status": "pending", ...}`` (:mod:`api.media.rtsp`).
* ``GET /api/v1/ingest/status/{request_id}``: the request's status and frames (the camera's own
  token, or the admin token).

Uploads stream to the blob store as they arrive (:mod:`api.media.multipart`); a
``Content-Length`` already over the limit is refused (413) before a byte is read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticated_device, bearer_token, is_admin_token, owns, require_device
from api.edge import IngestDeviceDep
from api.media.audio import FIELDS, FILE_FIELD, ingest_chunk
from api.media.context import MediaDep
from api.media.errors import invalid, too_large, unavailable
from api.media.images import ingest_upload, status_document
from api.media.multipart import FormReader
from api.media.resources import CapturesDep
from api.media.rtsp import CaptureJob, check_url, redact
from api.problems import ProblemError
from api.responses import json_response, problems
from connectors.postgres.devices import DatabaseUnavailable
from connectors.postgres.media import MediaRequest
from schemas.devices import check_metadata
from schemas.readings import DEVICE_ID_PATTERN
from schemas.settings import MediaSettings

router = APIRouter(tags=["media"])

FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart body may carry beyond its files (fields, part headers, boundaries)."""


def upload_body_limits(limits: MediaSettings) -> dict[str, int]:
    """The body limit of each upload route (``api.body_limit``); every other route has the
    API's ``max_body_bytes``."""
    return {
        "/api/v1/chunks": limits.max_audio_bytes + FORM_OVERHEAD,
        "/api/v1/ingest/upload": limits.max_image_bytes * limits.max_files_per_upload
        + FORM_OVERHEAD,
    }


_DEVICE_ID = DEVICE_ID_PATTERN.replace("\\Z", "$")
_MEDIA_PROBLEMS = problems(401, 403, 413, 415, 422, 429, 503)


def _multipart(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


_STRING = {"type": "string"}
_CHUNK_FORM = _multipart(
    {
        "point_id": {"type": "string", "format": "uuid"},
        "register_id": {"type": "string", "format": "uuid"},
        "device_id": _STRING,
        "start_ts": {"type": "string", "format": "date-time"},
        "end_ts": {"type": "string", "format": "date-time"},
        "codec": {"type": "string", "example": "opus"},
        "sample_rate": {"type": "integer", "example": 48000},
        "channels": {"type": "integer", "example": 1},
        "chunk_file": {"type": "string", "format": "binary"},
    },
    [*FIELDS, FILE_FIELD],
)
_UPLOAD_FORM = _multipart(
    {
        "camera_id": _STRING,
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "meta": {"type": "string", "description": "a JSON object", "example": '{"session":"FP1"}'},
    },
    ["camera_id", "files"],
)


def _refuse_declared_size(request: Request, field: str, limit: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise too_large(field, limit)


@router.post("/api/v1/chunks", responses=_MEDIA_PROBLEMS, openapi_extra=_CHUNK_FORM)
async def post_chunk(request: Request, media: MediaDep, principal: IngestDeviceDep) -> Response:
    """Seed 004: store one audio chunk; answered once it is durable, recorded and in Kafka."""
    _refuse_declared_size(request, "chunk_file", media.settings.media.max_audio_bytes)
    reader = FormReader(request)
    body = await ingest_chunk(media, reader, principal, datetime.now(UTC))
    return json_response(body, status.HTTP_200_OK)


@router.post("/api/v1/ingest/upload", responses=_MEDIA_PROBLEMS, openapi_extra=_UPLOAD_FORM)
async def post_upload(request: Request, media: MediaDep, principal: IngestDeviceDep) -> Response:
    """Seed 003: store one or more camera images (type checked from their bytes)."""
    limits = media.settings.media
    _refuse_declared_size(request, "files", limits.max_image_bytes * limits.max_files_per_upload)
    reader = FormReader(request)
    body = await ingest_upload(media, reader, principal, datetime.now(UTC))
    return json_response(body, status.HTTP_200_OK)


class RtspCapture(BaseModel):
    """Seed 003's capture request. ``single_frame`` takes one frame; ``frames`` takes
    ``frame_count`` frames at ``fps`` (default ``FLEET_MEDIA__RTSP_DEFAULT_FPS``)."""

    model_config = ConfigDict(extra="forbid")

    source_type: Literal["rtsp"] = "rtsp"
    rtsp_url: str = Field(max_length=2048, examples=["rtsp://user:pass@camera:554/stream"])
    camera_id: str = Field(pattern=_DEVICE_ID)
    capture_mode: Literal["single_frame", "frames"] = "single_frame"
    frame_count: int | None = Field(default=None, ge=1)
    fps: float | None = Field(default=None, gt=0)
    meta: dict[str, Any] = Field(default_factory=dict)


@router.post(
    "/api/v1/ingest/rtsp",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(401, 403, 422, 429, 503),
)
async def post_rtsp(
    body: RtspCapture, media: MediaDep, captures: CapturesDep, principal: IngestDeviceDep
) -> Response:
    """Seed 003: capture frames from an RTSP stream in the background; poll the status URL."""
    require_device(principal, body.camera_id)
    job = _job(body, media.settings.media)
    if not captures.reserve():
        raise unavailable(
            "this instance runs as many RTSP captures as it may; retry shortly",
            media.settings.api.retry_after_s,
        )
    now = datetime.now(UTC)
    timeout = timedelta(seconds=media.settings.media.rtsp_capture_timeout_s)
    request = MediaRequest(
        request_id=job.request_id,
        device_id=job.camera_id,
        source_type="rtsp",
        status="pending",
        frames_requested=job.frames,
        source=redact(job.url),
        capture_mode=body.capture_mode,
        fps=job.fps,
        meta=job.meta,
        deadline_at=now + timeout + timedelta(seconds=30),
    )
    try:
        await media.store.create_request(request)
    except DatabaseUnavailable as exc:
        captures.release()
        raise media.unavailable(exc) from exc
    captures.launch(job)
    answer = {
        "request_id": str(job.request_id),
        "status": "pending",
        "camera_id": job.camera_id,
        "status_url": f"/api/v1/ingest/status/{job.request_id}",
    }
    return json_response(answer, status.HTTP_202_ACCEPTED)


def _job(body: RtspCapture, limits: MediaSettings) -> CaptureJob:
    problem = check_url(body.rtsp_url)
    if problem is not None:
        raise invalid("rtsp_url", problem)
    try:
        check_metadata(body.meta)
    except ValueError as exc:
        raise invalid("meta", str(exc)) from exc
    if body.capture_mode == "single_frame":
        if body.frame_count not in (None, 1):
            raise invalid("frame_count", "single_frame takes one frame")
        frames, fps = 1, None
    else:
        frames = body.frame_count or 1
        fps = body.fps or limits.rtsp_default_fps
        if frames > limits.rtsp_max_frames:
            raise invalid("frame_count", f"at most {limits.rtsp_max_frames}")
        if fps > limits.rtsp_max_fps:
            raise invalid("fps", f"at most {limits.rtsp_max_fps:g}")
    return CaptureJob(
        request_id=uuid.uuid4(),
        camera_id=body.camera_id,
        url=body.rtsp_url,
        frames=frames,
        fps=fps,
        meta=body.meta,
    )


@router.get("/api/v1/ingest/status/{request_id}", responses=problems(401, 404, 503))
async def get_status(request_id: uuid.UUID, request: Request, media: MediaDep) -> Response:
    """A media request's status and stored frames (the camera's token or the admin token)."""
    token = bearer_token(request)
    admin = token is not None and is_admin_token(token, media.settings)
    device = None if admin else authenticated_device(request)
    try:
        found = await media.store.get_request(request_id)
    except DatabaseUnavailable as exc:
        raise media.unavailable(exc) from exc
    if found is None or (device is not None and not owns(device, found[0].device_id)):
        raise ProblemError(404, "Not found", f"no media request {request_id}")
    return json_response(status_document(*found, now=datetime.now(UTC)), status.HTTP_200_OK)

"""Media ingest through the real stack: the blob store (filesystem and S3Proxy), Postgres,
fleet.media.v1 on Kafka, and RTSP capture with ffmpeg from a local GStreamer stream."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import botocore.session
import httpx
import pytest
from botocore.config import Config

from api.app import create_app
from connectors.kafka.partitioner import partition_for
from schemas.media import decode_media_event
from schemas.settings import Settings
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.media.tools import (
    chunked,
    ensure_rtsp_server_packages,
    multipart,
    read_topic,
    rtsp_stream,
    silent_server,
)
from tests.support import free_port, wait_until

POINT = "5d6f7a1e-0b8c-4e2f-9a31-7c1d2e3f4a5b"
REGISTER = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
AUDIO_LIMIT = 64 * 1024
OGG = b"OggS\x00\x02" + bytes(range(256)) * 40  # ~10 KiB that starts like an Ogg stream
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
SEED_004_PATH = re.compile(
    rf"^audio/{POINT}/{REGISTER}/2026-11-28/09/chunk_20261128T093000Z_"
    r"(?P<chunk_id>[0-9a-f-]{36})\.ogg$"
)


def _settings(pipeline: Settings, tmp_path: Path, **blob: Any) -> Settings:
    media = {
        "max_audio_bytes": AUDIO_LIMIT,
        "max_image_bytes": 256 * 1024,
        "rtsp_capture_timeout_s": 25.0,
        "rtsp_reconnect_backoff_s": 0.2,
    }
    return pipeline.model_copy(
        update={
            "blob": pipeline.blob.model_copy(update={"root": tmp_path / "blobs", **blob}),
            "media": pipeline.media.model_copy(update=media),
        }
    )


@asynccontextmanager
async def _api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://fleet.test", timeout=60
        ) as client:
            yield client


def _chunk_form(device_id: str) -> dict[str, str]:
    return {
        "point_id": POINT,
        "register_id": REGISTER,
        "device_id": device_id,
        "start_ts": "2026-11-28T09:30:00Z",
        "end_ts": "2026-11-28T09:31:00Z",
        "codec": "opus",
        "sample_rate": "48000",
        "channels": "1",
    }


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def _bearer(fleet: Fleet, device_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.tokens[device_id]}"}


async def test_an_audio_chunk_is_stored_recorded_and_announced_once(
    pipeline: Settings, tmp_path: Path, db: asyncpg.Connection
) -> None:
    settings = _settings(pipeline, tmp_path)
    device_id = f"rec-{uuid.uuid4().hex[:8]}"
    async with _api(settings) as client:
        fleet = Fleet(client)
        await fleet.enroll([device_id], point_id=POINT, register_id=REGISTER)
        upload = {"chunk_file": ("chunk.ogg", OGG, "audio/ogg")}
        first = await client.post(
            "/api/v1/chunks",
            data=_chunk_form(device_id),
            files=upload,
            headers=_bearer(fleet, device_id),
        )
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["status"] == "ok" and answer["queued"] is True
        match = SEED_004_PATH.match(answer["stored_path"])
        assert match is not None, answer["stored_path"]
        assert match["chunk_id"] == answer["chunk_id"]

        stored = settings.blob.root / answer["stored_path"]
        assert stored.read_bytes() == OGG
        sha256 = hashlib.sha256(OGG).hexdigest()

        retry = await client.post(
            "/api/v1/chunks",
            data=_chunk_form(device_id),
            files=upload,
            headers=_bearer(fleet, device_id),
        )
        assert retry.status_code == 200, retry.text
        assert retry.json() == answer  # the same chunk, not a second one

    rows = await db.fetch("SELECT * FROM audio_chunks WHERE device_id = $1", device_id)
    assert len(rows) == 1
    row = rows[0]
    assert str(row["chunk_id"]) == answer["chunk_id"]
    assert (row["sha256"], row["file_size_bytes"], row["status"]) == (sha256, len(OGG), "QUEUED")
    assert (row["file_path"], row["duration_sec"], row["codec"]) == (
        answer["stored_path"],
        60,
        "opus",
    )
    assert _files_under(settings.blob.root) == [stored]  # the retry's copy was removed
    seen = await db.fetchval("SELECT last_seen_at FROM devices WHERE device_id = $1", device_id)
    assert seen is not None  # the upload counts as the device being seen

    messages = read_topic(settings.kafka.bootstrap_servers, settings.topics.media)
    assert len(messages) == 1
    event = decode_media_event(messages[0].value)
    assert messages[0].key == device_id.encode()
    assert messages[0].partition == partition_for(device_id, settings.kafka.partitions)
    assert (event.event_id, event.kind, event.sha256, event.size_bytes) == (
        answer["chunk_id"],
        "audio_chunk",
        sha256,
        len(OGG),
    )
    assert event.object_key == answer["stored_path"]
    assert event.metadata["point_id"] == POINT


async def test_wrong_credentials_and_oversized_chunks_store_nothing(
    pipeline: Settings, tmp_path: Path, db: asyncpg.Connection
) -> None:
    settings = _settings(pipeline, tmp_path)
    device_id, other = f"rec-{uuid.uuid4().hex[:8]}", f"rec-{uuid.uuid4().hex[:8]}"
    form = _chunk_form(device_id)
    upload = {"chunk_file": ("chunk.ogg", OGG, "audio/ogg")}
    async with _api(settings) as client:
        fleet = Fleet(client)
        await fleet.enroll([device_id, other])
        wrong = await client.post(
            "/api/v1/chunks",
            data=form,
            files=upload,
            headers={"Authorization": "Bearer not-a-token-of-anybody"},
        )
        assert wrong.status_code == 401, wrong.text
        assert wrong.headers["content-type"] == "application/problem+json"
        foreign = await client.post(
            "/api/v1/chunks", data=form, files=upload, headers=_bearer(fleet, other)
        )
        assert foreign.status_code == 403, foreign.text
        assert foreign.json()["errors"][0]["field"] == "device_id"

        big = OGG * 8  # ~80 KiB, over the 64 KiB limit
        declared = await client.post(
            "/api/v1/chunks",
            data=form,
            files={"chunk_file": ("chunk.ogg", big * 2, "audio/ogg")},
            headers=_bearer(fleet, device_id),
        )
        assert declared.status_code == 413, declared.text  # refused from Content-Length
        boundary = uuid.uuid4().hex
        body = multipart(boundary, list(form.items()), [("chunk_file", "chunk.ogg", big)])
        streamed = await client.post(
            "/api/v1/chunks",
            content=chunked(body),
            headers={
                **_bearer(fleet, device_id),
                "content-type": f"multipart/form-data; boundary={boundary}",
            },
        )
        assert streamed.status_code == 413, streamed.text  # refused while streaming
        assert streamed.json()["errors"][0]["field"] == "chunk_file"

    assert _files_under(settings.blob.root) == []  # no partial file anywhere
    count = await db.fetchval(
        "SELECT count(*) FROM audio_chunks WHERE device_id = ANY($1)", [device_id, other]
    )
    assert count == 0
    assert read_topic(settings.kafka.bootstrap_servers, settings.topics.media) == []


def _s3(settings: Settings) -> Any:
    blob = settings.blob
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=blob.s3_endpoint,
        region_name=blob.s3_region,
        aws_access_key_id=blob.s3_access_key,
        aws_secret_access_key=blob.s3_secret_key.get_secret_value(),
        config=Config(s3={"addressing_style": "path"}),
    )


async def test_uploaded_images_land_in_the_s3_compatible_server(
    pipeline: Settings, tmp_path: Path, db: asyncpg.Connection
) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    settings = _settings(pipeline, tmp_path, backend="s3", s3_bucket=bucket)
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    async with _api(settings) as client:
        fleet = Fleet(client)
        await fleet.enroll([camera])
        ready = await client.get("/health/ready")
        assert ready.json()["blob_store"] is True  # the bucket answers
        response = await client.post(
            "/api/v1/ingest/upload",
            data={"camera_id": camera, "meta": '{"session": "FP1", "location": "Pit Lane"}'},
            files=[
                ("files", ("before.png", PNG, "image/png")),
                ("files", ("after.txt", JPEG, "text/plain")),  # the name does not matter
            ],
            headers=fleet.headers(camera),
        )
        assert response.status_code == 200, response.text
        document = response.json()
        status = await client.get(
            f"/api/v1/ingest/status/{document['request_id']}", headers=fleet.headers(camera)
        )
        assert status.status_code == 200
        assert status.json()["frames"] == document["frames"]

        refused = await client.post(
            "/api/v1/ingest/upload",
            data={"camera_id": camera},
            files=[
                ("files", ("ok.jpg", JPEG, "image/jpeg")),
                ("files", ("evil.jpg", b"#!/bin/sh\necho not an image\n", "image/jpeg")),
            ],
            headers=fleet.headers(camera),
        )
        assert refused.status_code == 415, refused.text
        assert refused.json()["errors"][0]["field"] == "files[1]"

    assert document["status"] == "completed"
    assert document["meta"] == {"session": "FP1", "location": "Pit Lane"}
    frames = document["frames"]
    assert [frame["content_type"] for frame in frames] == ["image/png", "image/jpeg"]
    s3 = _s3(settings)
    for frame, data in zip(frames, (PNG, JPEG), strict=True):
        assert frame["object_key"].startswith(f"frames/{camera}/")
        assert frame["sha256"] == hashlib.sha256(data).hexdigest()
        stored = s3.get_object(Bucket=bucket, Key=frame["object_key"])["Body"].read()
        assert stored == data
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"frames/{camera}/")
    # (jclouds' filesystem store also lists its folders, as keys ending in "/")
    objects = {item["Key"] for item in listed.get("Contents", []) if not item["Key"].endswith("/")}
    assert objects == {frame["object_key"] for frame in frames}  # the refused one left nothing
    rows = await db.fetch("SELECT sha256 FROM media_frames WHERE device_id = $1", camera)
    assert sorted(row["sha256"] for row in rows) == sorted(f["sha256"] for f in frames)
    events = [
        decode_media_event(message.value)
        for message in read_topic(settings.kafka.bootstrap_servers, settings.topics.media)
    ]
    assert sorted(event.event_id for event in events) == sorted(f["frame_id"] for f in frames)
    assert {event.storage for event in events} == {"s3"}


@pytest.fixture(scope="module")
def rtsp_server_packages(tmp_path_factory: pytest.TempPathFactory) -> None:
    ensure_rtsp_server_packages(tmp_path_factory.mktemp("apt") / "apt.log")


async def _status(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/ingest/status/{request_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_rtsp_capture_stores_the_requested_frames(
    pipeline: Settings, tmp_path: Path, rtsp_server_packages: None
) -> None:
    settings = _settings(pipeline, tmp_path)
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with rtsp_stream(free_port(), "viewer", password) as url:
        async with _api(settings) as client:
            fleet = Fleet(client)
            await fleet.enroll([camera])
            accepted = await client.post(
                "/api/v1/ingest/rtsp",
                json={
                    "source_type": "rtsp",
                    "rtsp_url": url,
                    "camera_id": camera,
                    "capture_mode": "frames",
                    "frame_count": 3,
                    "fps": 2,
                    "meta": {"session": "FP1"},
                },
                headers=fleet.headers(camera),
            )
            assert accepted.status_code == 202, accepted.text
            request_id = accepted.json()["request_id"]

            async def finished() -> bool:
                done = (await _status(client, request_id))["status"]
                return done in ("completed", "failed")

            await wait_until(finished, timeout_s=40, what="the capture to finish")
            document = await _status(client, request_id)

    assert document["status"] == "completed", document
    assert (document["frames_requested"], document["frames_stored"]) == (3, 3)
    assert password not in str(document) and document["source"].startswith("rtsp://***@")
    for frame in document["frames"]:
        data = (settings.blob.root / frame["object_key"]).read_bytes()
        assert data.startswith(b"\xff\xd8\xff")  # a JPEG
        assert hashlib.sha256(data).hexdigest() == frame["sha256"]
    messages = read_topic(settings.kafka.bootstrap_servers, settings.topics.media)
    events = [decode_media_event(message.value) for message in messages]
    assert sorted(e.event_id for e in events) == sorted(f["frame_id"] for f in document["frames"])
    assert {(e.source, e.request_id) for e in events} == {("rtsp", request_id)}


async def test_a_stream_that_never_answers_fails_within_the_timeout(
    pipeline: Settings, tmp_path: Path
) -> None:
    settings = _settings(pipeline, tmp_path)
    timeout_s = 4.0
    settings = settings.model_copy(
        update={
            "media": settings.media.model_copy(
                update={"rtsp_capture_timeout_s": timeout_s, "rtsp_max_concurrent": 1}
            )
        }
    )
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    with silent_server() as port:
        async with _api(settings) as client:
            fleet = Fleet(client)
            await fleet.enroll([camera])
            accepted = await client.post(
                "/api/v1/ingest/rtsp",
                json={
                    "rtsp_url": f"rtsp://user:hunter2@127.0.0.1:{port}/live",
                    "camera_id": camera,
                },
                headers=fleet.headers(camera),
            )
            assert accepted.status_code == 202, accepted.text
            request_id = accepted.json()["request_id"]
            busy = await client.post(  # the one capture slot is taken
                "/api/v1/ingest/rtsp",
                json={"rtsp_url": f"rtsp://127.0.0.1:{port}/other", "camera_id": camera},
                headers=fleet.headers(camera),
            )
            assert busy.status_code == 503 and "retry-after" in busy.headers, busy.text

            async def failed() -> bool:
                return bool((await _status(client, request_id))["status"] == "failed")

            await wait_until(failed, timeout_s=timeout_s + 5, what="the capture to fail")
            document = await _status(client, request_id)

    assert "timeout" in document["error"], document
    assert document["frames_stored"] == 0 and document["frames"] == []
    assert "hunter2" not in str(document)
    assert read_topic(settings.kafka.bootstrap_servers, settings.topics.media) == []


async def test_a_capture_reconnects_until_the_stream_is_up(
    pipeline: Settings, tmp_path: Path, rtsp_server_packages: None
) -> None:
    settings = _settings(pipeline, tmp_path)
    settings = settings.model_copy(
        update={
            "media": settings.media.model_copy(
                update={"rtsp_reconnect_attempts": 6, "rtsp_reconnect_backoff_s": 0.5}
            )
        }
    )
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    port = free_port()
    async with _api(settings) as client:
        fleet = Fleet(client)
        await fleet.enroll([camera])
        accepted = await client.post(
            "/api/v1/ingest/rtsp",
            json={"rtsp_url": f"rtsp://127.0.0.1:{port}/live", "camera_id": camera},
            headers=fleet.headers(camera),
        )
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["request_id"]

        async def tried() -> bool:  # the first attempt found nothing listening
            return bool((await _status(client, request_id))["status"] == "processing")

        await wait_until(tried, timeout_s=10, what="the capture to start")
        with rtsp_stream(port):

            async def finished() -> bool:
                done = (await _status(client, request_id))["status"]
                return done in ("completed", "failed")

            await wait_until(finished, timeout_s=40, what="the capture to finish")
        document = await _status(client, request_id)
    assert document["status"] == "completed", document
    assert (document["capture_mode"], document["frames_stored"]) == ("single_frame", 1)


async def test_a_chunk_the_event_log_did_not_take_is_announced_by_the_retry(
    pipeline: Settings, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """Kafka unreachable: 503, the chunk stays UPLOADED (stored, recorded, not announced); the
    device's retry against a working API announces it once and answers the same chunk."""
    settings = _settings(pipeline, tmp_path)
    settings = settings.model_copy(  # no device cache without Kafka: unauthenticated (dev) ingest
        update={
            "auth": settings.auth.model_copy(
                update={"allow_unauthenticated_ingest": True, "cache_catchup_timeout_s": 0}
            )
        }
    )
    dead = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={
                    "bootstrap_servers": f"127.0.0.1:{free_port()}",
                    "delivery_timeout_ms": 1500,
                }
            )
        }
    )
    device_id = f"rec-{uuid.uuid4().hex[:8]}"
    upload = {"chunk_file": ("chunk.ogg", OGG, "audio/ogg")}
    async with _api(dead) as client:
        refused = await client.post("/api/v1/chunks", data=_chunk_form(device_id), files=upload)
    assert refused.status_code == 503, refused.text
    assert "retry-after" in refused.headers
    row = await db.fetchrow("SELECT * FROM audio_chunks WHERE device_id = $1", device_id)
    assert row is not None and row["status"] == "UPLOADED"
    assert read_topic(settings.kafka.bootstrap_servers, settings.topics.media) == []

    async with _api(settings) as client:
        retry = await client.post("/api/v1/chunks", data=_chunk_form(device_id), files=upload)
    assert retry.status_code == 200, retry.text
    assert retry.json()["chunk_id"] == str(row["chunk_id"])
    status = await db.fetchval("SELECT status FROM audio_chunks WHERE device_id = $1", device_id)
    assert status == "QUEUED"
    assert len(_files_under(settings.blob.root)) == 1
    messages = read_topic(settings.kafka.bootstrap_servers, settings.topics.media)
    assert [decode_media_event(m.value).event_id for m in messages] == [str(row["chunk_id"])]


async def test_an_unreachable_blob_store_is_503_and_nothing_is_recorded(
    pipeline: Settings, tmp_path: Path, db: asyncpg.Connection
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = _settings(pipeline, tmp_path, backend="s3", s3_endpoint=dead, s3_timeout_s=2.0)
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    async with _api(settings) as client:
        fleet = Fleet(client)
        await fleet.enroll([camera])
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()["status"], ready.json()["blob_store"]) == (
            200,
            "degraded",
            False,
        )
        response = await client.post(
            "/api/v1/ingest/upload",
            data={"camera_id": camera},
            files=[("files", ("a.png", PNG, "image/png"))],
            headers=fleet.headers(camera),
        )
    assert response.status_code == 503, response.text
    assert "retry-after" in response.headers
    assert (
        await db.fetchval("SELECT count(*) FROM media_requests WHERE device_id = $1", camera) == 0
    )
    assert read_topic(settings.kafka.bootstrap_servers, settings.topics.media) == []

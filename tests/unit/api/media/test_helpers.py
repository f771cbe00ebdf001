"""Media helpers without I/O: magic numbers, RTSP URL redaction, ffmpeg arguments, the seed 004
form, status documents."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.media.audio import ChunkForm, check_placement, parse_fields
from api.media.images import parse_meta, status_document
from api.media.rtsp import CaptureJob, check_url, ffmpeg_argv, redact, scrub
from api.media.sniff import audio_type, image_type, peek
from api.problems import ProblemError
from connectors.postgres.media import MediaRequest
from schemas.devices import Device

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AHEAD = timedelta(minutes=5)
POINT = "11111111-1111-4111-8111-111111111111"
REGISTER = "22222222-2222-4222-8222-222222222222"


@pytest.mark.parametrize(
    ("head", "ext"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"\x00\x00\x00\x18ftypheic", "heic"),
    ],
)
def test_images_are_known_by_their_first_bytes(head: bytes, ext: str) -> None:
    kind = image_type(head)
    assert kind is not None and kind.ext == ext


@pytest.mark.parametrize(
    "head", [b"", b"hello world, not", b"%PDF-1.7\n", b"OggS\x00\x02", b"RIFF\x10\x00\x00\x00WAVE"]
)
def test_other_bytes_are_not_images_whatever_the_name(head: bytes) -> None:
    assert image_type(head) is None


def test_audio_containers_win_over_the_codec_field() -> None:
    assert audio_type(b"OggS\x00\x02", "flac").ext == "ogg"
    assert audio_type(b"fLaC\x00", "opus").ext == "flac"
    assert audio_type(b"RIFF\x00\x00\x00\x00WAVEfmt ", "opus").ext == "wav"
    assert audio_type(b"ID3\x04", "x").ext == "mp3"
    assert audio_type(b"\x00\x01\x02\x03", "opus").content_type == "audio/ogg"  # codec hint
    assert audio_type(b"\x00\x01\x02\x03", "pcm_s16le").ext == "bin"


async def test_peek_gives_the_head_and_every_byte_back() -> None:
    async def source() -> AsyncIterator[bytes]:
        for part in (b"\xff", b"\xd8\xff", b"rest-of-the-image", b"tail"):
            yield part

    head, stream = await peek(source(), 4)
    assert head == b"\xff\xd8\xffr"
    assert b"".join([chunk async for chunk in stream]) == b"\xff\xd8\xffrest-of-the-imagetail"


def test_rtsp_credentials_are_redacted_and_scrubbed() -> None:
    url = "rtsp://admin:s3cr3t@cam.local:554/stream?x=1"
    assert redact(url) == "rtsp://***@cam.local:554/stream?x=1"
    assert redact("rtsp://cam.local/stream") == "rtsp://cam.local/stream"
    message = f"{url}: 401 Unauthorized; also rtsp://other:pw@host/x"
    scrubbed = scrub(message, url)
    assert "s3cr3t" not in scrubbed and "admin" not in scrubbed and "pw@" not in scrubbed
    assert "401 Unauthorized" in scrubbed


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("rtsp://cam:554/live", True),
        ("rtsps://u:p@cam/live", True),
        ("http://cam/live", False),
        ("rtsp:///live", False),
        ("rtsp://cam:99999/live", False),
        ("rtsp://cam/li ve", False),
        ("file:///etc/passwd", False),
    ],
)
def test_only_rtsp_urls_with_a_host_are_captured(url: str, ok: bool) -> None:
    assert (check_url(url) is None) is ok


def test_ffmpeg_arguments_per_capture_mode(tmp_path: Path) -> None:
    job = CaptureJob(uuid.uuid4(), "cam-1", "rtsp://cam/live", frames=3, fps=2.0)
    argv = ffmpeg_argv("ffmpeg", job, tmp_path, io_timeout_s=5)
    assert argv[argv.index("-i") + 1] == "rtsp://cam/live"
    assert argv[argv.index("-timeout") + 1] == "5000000"
    assert argv[argv.index("-rtsp_transport") + 1] == "tcp"
    assert argv[argv.index("-vf") + 1] == "fps=2"
    assert argv[argv.index("-frames:v") + 1] == "3"
    assert argv[-1] == str(tmp_path / "frame_%05d.jpg")
    single = CaptureJob(uuid.uuid4(), "cam-1", "rtsp://cam/live", frames=1, fps=None)
    single_argv = ffmpeg_argv("ffmpeg", single, tmp_path, io_timeout_s=5)
    assert "-vf" not in single_argv
    assert single_argv[single_argv.index("-frames:v") + 1] == "1"


def _fields(**changes: str) -> dict[str, str]:
    fields = {
        "point_id": POINT,
        "register_id": REGISTER,
        "device_id": "rec-1",
        "start_ts": "2026-11-28T11:00:00Z",
        "end_ts": "2026-11-28T11:01:00+00:00",
        "codec": "opus",
        "sample_rate": "48000",
        "channels": "1",
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value != "-"}


def test_seed_004_fields_are_parsed() -> None:
    form = parse_fields(_fields(), NOW, AHEAD)
    assert form.point_id == uuid.UUID(POINT)
    assert form.start_ts == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    assert form.duration_sec == 60
    assert (form.sample_rate, form.channels, form.codec) == (48000, 1, "opus")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"point_id": "-"}, "point_id"),
        ({"point_id": "not-a-uuid"}, "point_id"),
        ({"start_ts": "2026-11-28T11:00:00"}, "start_ts"),
        ({"start_ts": "yesterday"}, "start_ts"),
        ({"end_ts": "2026-11-28T10:59:00Z"}, "end_ts"),
        ({"end_ts": "2026-11-29T12:00:00Z"}, "end_ts"),
        ({"sample_rate": "48k"}, "sample_rate"),
        ({"channels": "0"}, "channels"),
        ({"codec": "op us"}, "codec"),
        ({"device_id": "../etc"}, "device_id"),
    ],
)
def test_bad_seed_004_fields_are_422_naming_the_field(changes: dict[str, str], field: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_fields(_fields(**changes), NOW, AHEAD)
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["field"] == field


def _device(device_id: str, **metadata: str) -> Device:
    return Device(
        device_id=device_id,
        token_hash="0" * 64,
        is_enabled=True,
        metadata=metadata,
        created_at=NOW,
        updated_at=NOW,
    )


def test_a_device_writes_only_its_own_chunks_and_its_pinned_point() -> None:
    form: ChunkForm = parse_fields(_fields(), NOW, AHEAD)
    check_placement(_device("rec-1"), form)
    check_placement(_device("rec-1", point_id=POINT.upper()), form)
    check_placement(None, form)  # unauthenticated ingest (development only)
    with pytest.raises(ProblemError) as caught:
        check_placement(_device("rec-2"), form)
    assert caught.value.status == 403
    with pytest.raises(ProblemError) as caught:
        check_placement(_device("rec-1", register_id=str(uuid.uuid4())), form)
    assert caught.value.extra["errors"][0]["field"] == "register_id"


@pytest.mark.parametrize("text", ["[1]", "{", '{"a": "\\u0000"}', "1"])
def test_meta_must_be_a_clean_json_object(text: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_meta(text)
    assert caught.value.extra["errors"][0]["field"] == "meta"


def test_a_capture_past_its_deadline_reads_as_failed() -> None:
    request = MediaRequest(
        request_id=uuid.uuid4(),
        device_id="cam-1",
        source_type="rtsp",
        status="processing",
        frames_requested=2,
        deadline_at=NOW,
    )
    assert status_document(request, [], now=NOW)["status"] == "processing"
    late = status_document(request, [], now=NOW + timedelta(seconds=1))
    assert late["status"] == "failed" and "did not finish" in late["error"]

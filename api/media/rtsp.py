"""Seed 003 RTSP frame capture as bounded background jobs, with ffmpeg.

A capture (``POST /api/v1/ingest/rtsp``) reserves one of ``FLEET_MEDIA__RTSP_MAX_CONCURRENT``
slots of this API process (none free → 503 + Retry-After), is recorded ``pending`` and runs in
the background: ffmpeg reads the stream over RTSP/TCP (``-timeout``: a socket that stays silent
fails the attempt) and writes ``frames`` JPEGs at ``fps`` (or one) to a private temp folder;
a failed attempt is retried ``FLEET_MEDIA__RTSP_RECONNECT_ATTEMPTS`` times with a doubling pause.
Everything, storing included, must finish within ``FLEET_MEDIA__RTSP_CAPTURE_TIMEOUT_S``:
then ffmpeg is killed and the request is ``failed`` with the reason. Frames go to the blob store
(``frames/<camera_id>/...``), are recorded and announced on ``fleet.media.v1`` like uploads,
then the request is ``completed``.

Credentials in the URL are never logged nor stored: the request row keeps the URL with its
user info replaced by ``***``, and ffmpeg's messages (which quote the URL) are scrubbed before
they are logged or reported. ffmpeg gets the URL as an argument, so local users who may list
the API host's processes can see it while a capture runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from api.media.context import Media
from api.media.images import frame_event
from api.media.sniff import image_type
from connectors.blob.errors import BlobError
from connectors.blob.layout import frame_key
from connectors.egress import EgressPolicy, EgressRefused
from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure
from connectors.postgres.devices import DatabaseUnavailable
from connectors.postgres.media import MediaFrame
from schemas.errors import FleetError
from schemas.events import new_event_id
from schemas.settings import SEED003_RTSP_MAX_CONCURRENT, MediaSettings, Settings

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
MAX_ERROR = 300
_USERINFO = re.compile(r"(?i)\b(rtsps?://)[^/\s@]*@")


def redact(url: str) -> str:
    """``url`` without its user info (``rtsp://***@host/...``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. ffmpeg's stderr) with the URL's user info, and any other, removed."""
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    if userinfo:
        text = text.replace(userinfo, "***")
    return _USERINFO.sub(r"\1***@", text)


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be captured, or None: rtsp/rtsps with a host, no spaces."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("rtsp", "rtsps"):
        return "must be an rtsp:// or rtsps:// URL"
    if not parts.hostname:
        return "has no host"
    if port == 0 or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "is not a valid URL"
    return None


@dataclass(frozen=True)
class CaptureJob:
    request_id: uuid.UUID
    camera_id: str
    url: str
    frames: int
    fps: float | None
    """None: one frame, as it comes (single_frame)."""
    meta: dict[str, Any] = field(default_factory=dict)


_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}


class CaptureFailed(FleetError):
    """The stream gave no (or too few) frames; the message is already scrubbed."""


def ffmpeg_argv(ffmpeg: str, job: CaptureJob, out_dir: Path, io_timeout_s: float) -> list[str]:
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rtsp_transport", "tcp",
        "-timeout", str(max(1, int(io_timeout_s * 1_000_000))),
        "-i", job.url,
        "-an",
    ]  # fmt: skip
    if job.fps is not None:
        argv += ["-vf", f"fps={job.fps:g}"]
    argv += ["-frames:v", str(job.frames), "-q:v", "2", "-f", "image2", "-y"]
    return [*argv, str(out_dir / "frame_%05d.jpg")]


def capture_limit(settings: Settings) -> int:
    """Captures at once: ``FLEET_MEDIA__RTSP_MAX_CONCURRENT`` when set; unset, seed 003's 10
    while its profile is on (its deployments expect that many cameras at once), else 4."""
    media = settings.media
    if "rtsp_max_concurrent" in media.model_fields_set or "003" not in settings.compat.profiles():
        return media.rtsp_max_concurrent
    return SEED003_RTSP_MAX_CONCURRENT


class CaptureManager:
    """Runs capture jobs in this process, at most :func:`capture_limit` at a time."""

    def __init__(self, media: Media) -> None:
        self.media = media
        self.settings: MediaSettings = media.settings.media
        self.egress = EgressPolicy.from_settings(media.settings)
        self.limit = capture_limit(media.settings)
        self._reserved = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def reserve(self) -> bool:
        """Take a slot for a job about to be launched; False when all are taken."""
        if self._reserved >= self.limit:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        self._reserved -= 1

    def launch(self, job: CaptureJob) -> None:
        """Run ``job`` in the background on a reserved slot (released when it ends)."""
        task = asyncio.create_task(self._run(job), name=f"rtsp-capture-{job.request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.release()

    async def stop(self) -> None:
        """Cancel running captures (each marks its request failed) and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: CaptureJob) -> None:
        store = self.media.store
        timeout = self.settings.rtsp_capture_timeout_s
        try:
            await store.set_status(job.request_id, "processing")
            async with asyncio.timeout(timeout):
                error = await self._capture_and_store(job)
            await store.set_status(job.request_id, "failed" if error else "completed", error)
        except TimeoutError:
            await self._fail(job, f"no frames within the capture timeout ({timeout:g} s)")
        except (CaptureFailed, EgressRefused) as exc:
            await self._fail(job, str(exc))
        except asyncio.CancelledError:
            await self._fail(job, "the API stopped during the capture")
            raise
        except (BlobError, DatabaseUnavailable, KafkaUnavailable, ProducerBackpressure) as exc:
            await self._fail(job, f"storing the frames failed: {type(exc).__name__}")
        except Exception:
            log.exception("capture %s failed", job.request_id)
            await self._fail(job, "internal error")

    async def _fail(self, job: CaptureJob, error: str) -> None:
        log.info("capture %s of %s failed: %s", job.request_id, redact(job.url), error)
        with contextlib.suppress(DatabaseUnavailable):
            await self.media.store.set_status(job.request_id, "failed", error[:MAX_ERROR])

    async def _capture_and_store(self, job: CaptureJob) -> str | None:
        """Capture, store, record and announce; the error text when frames are missing."""
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="fleet-rtsp-"))
        try:
            files = await self._capture(job, folder)
            frames = [await self._store(job, seq, path) for seq, path in enumerate(files)]
            now = datetime.now(UTC)
            await self.media.store.add_frames(job.request_id, frames)
            await self.media.announcer.announce(
                [frame_event(frame, job.meta, "rtsp", now) for frame in frames]
            )
            self.media.count_frames("rtsp", len(frames))
            await self.media.seen(job.camera_id, now)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        if len(frames) < job.frames:
            return f"the stream ended after {len(frames)} of {job.frames} frames"
        return None

    async def _capture(self, job: CaptureJob, folder: Path) -> list[Path]:
        job = await self._pinned(job)
        attempts = 1 + self.settings.rtsp_reconnect_attempts
        pause = self.settings.rtsp_reconnect_backoff_s
        error = "no attempt"
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(pause * 2 ** (attempt - 1))
            error = await self._ffmpeg(job, folder)
            files = await asyncio.to_thread(_frames_in, folder)
            if files:
                return files
            log.info(
                "capture %s: attempt %d/%d of %s failed: %s",
                job.request_id, attempt + 1, attempts, redact(job.url), error or "no frames",
            )  # fmt: skip
        # The device is told no more than that: ffmpeg's own words ("Connection refused", a
        # timeout) would tell open ports from closed ones on any host the guard lets through.
        raise CaptureFailed(f"the stream gave no frames after {attempts} attempts")

    async def _pinned(self, job: CaptureJob) -> CaptureJob:
        """``job`` after the egress guard: rtsp:// goes to the address that was checked (so a
        second DNS answer cannot differ); rtsps:// keeps its host name for TLS."""
        parts = urlsplit(job.url)
        host, port = parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
        addresses = await self.egress.resolve(host, port)
        if parts.scheme.lower() != "rtsp":
            return job
        address = addresses[0]
        literal = f"[{address}]" if ":" in address else address
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{literal}:{port}"
        return replace(job, url=urlunsplit(parts._replace(netloc=netloc)))

    async def _ffmpeg(self, job: CaptureJob, folder: Path) -> str:
        """Run ffmpeg once; its scrubbed error output (empty when it succeeded)."""
        io_timeout = min(10.0, self.settings.rtsp_capture_timeout_s)
        argv = ffmpeg_argv(self.settings.ffmpeg, job, folder, io_timeout)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise CaptureFailed(f"cannot run {self.settings.ffmpeg}: {exc.strerror}") from exc
        try:
            _, stderr = await process.communicate()
        finally:
            if process.returncode is None:  # timed out or cancelled: never leave it running
                process.kill()
                await process.wait()
        text = scrub(stderr.decode("utf-8", "replace"), job.url).strip()
        lines = text.splitlines()
        if process.returncode == 0:
            return ""
        return (lines[-1] if lines else f"ffmpeg exited with {process.returncode}")[:MAX_ERROR]

    async def _store(self, job: CaptureJob, seq: int, path: Path) -> MediaFrame:
        head = await asyncio.to_thread(_head, path)
        kind = image_type(head)
        if kind is None:
            raise CaptureFailed("ffmpeg wrote a frame that is not an image")
        stat = await asyncio.to_thread(path.stat)
        captured_at = datetime.fromtimestamp(stat.st_mtime, UTC)
        frame_id = uuid.UUID(new_event_id())
        key = frame_key(job.camera_id, captured_at, frame_id, kind.ext)
        stored = await self.media.blob.put(
            key,
            _read(path),
            max_bytes=self.settings.max_image_bytes,
            content_type=kind.content_type,
        )
        return MediaFrame(
            frame_id=frame_id,
            request_id=job.request_id,
            seq=seq,
            device_id=job.camera_id,
            object_key=stored.key,
            storage=self.media.storage,
            content_type=stored.content_type,
            size_bytes=stored.size,
            sha256=stored.sha256,
            captured_at=captured_at,
        )


def _frames_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("frame_*.jpg"))


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(16)


async def _read(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk
    finally:
        handle.close()

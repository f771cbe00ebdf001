"""Helpers of the media integration tests: a local RTSP stream, a stream that never answers,
multipart bodies, and the ``fleet.media.v1`` records with their keys and partitions."""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from cli.stack import installer
from cli.stack.installer import Requirement

SERVER = Path(__file__).with_name("rtsp_test_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
GST_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
)


def _gst_ready() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [SYSTEM_PYTHON, "-c", probe], capture_output=True, check=False, timeout=30
    )
    return result.returncode == 0


def ensure_rtsp_server_packages(log: Path) -> None:
    """Install GStreamer's RTSP server (Debian packages) when missing, as the stack does for
    its services; fails naming the packages where it cannot install."""
    requirement = Requirement("GStreamer RTSP server (python3 gi)", _gst_ready, GST_PACKAGES)
    installer.ensure([requirement], log, print)


@contextmanager
def rtsp_stream(port: int, user: str | None = None, password: str | None = None) -> Iterator[str]:
    """A test pattern served at ``rtsp://127.0.0.1:<port>/live`` while the block runs; the
    server process is stopped by its pid afterwards. Yields the URL (with the credentials)."""
    argv = [SYSTEM_PYTHON, str(SERVER), str(port)]
    if user and password:
        argv += [user, password]
    process = subprocess.Popen(  # noqa: S603 - our own script
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first == "ready", f"RTSP test server did not start: {first!r}"
        auth = f"{user}:{password}@" if user and password else ""
        yield f"rtsp://{auth}127.0.0.1:{port}/live"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def multipart(
    boundary: str, fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, bytes]]
) -> bytes:
    """A multipart/form-data body: fields first, then files, in the given order."""
    out = b""
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, filename, data in files:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def chunked(body: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    """The body as a stream without Content-Length (chunked), so only streaming limits apply."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes
    partition: int


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every record of ``topic`` up to its current end, with keys and partitions."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"media-test-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        messages: list[Message] = []
        polls = 120
        while len(messages) < sum(ends.values()) and polls > 0:
            polls -= 1
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            value, partition = message.value(), message.partition()
            assert value is not None and partition is not None
            messages.append(Message(message.key(), value, partition))
        return messages
    finally:
        consumer.close()

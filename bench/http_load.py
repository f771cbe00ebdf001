"""A lean HTTP/1.1 client for open-loop load: pre-encoded POSTs on keep-alive connections.

The latency scenario shares two cores with the system it measures, so the load generator's own
CPU is CPU the API and the worker do not get. httpx spent ~2.5 ms of CPU per request of 50
readings (0.25 of a core at 5,000 readings/s, more than Postgres and Redis together); writing
prepared bytes to a socket and reading the status line costs a few percent of that. Enough
HTTP/1.1 for our own API on loopback: one request at a time per connection, answers with a
``Content-Length`` (uvicorn's), a new connection when every open one is busy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_REUSE_S = 2.0
"""A connection idle longer than this is closed, not reused: uvicorn closes idle keep-alive
connections after 5 s, and a request written to one it is closing fails (seen in a run)."""


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


_FAILURES = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,  # headers past the reader's 64 KiB
    ValueError,  # a Content-Length that is not a number
    HttpError,
)


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """The bytes of a keep-alive ``POST`` of JSON ``body``."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


@dataclass
class LeanClient:
    """Sends prepared requests; each :meth:`send` takes an idle connection or opens one."""

    host: str
    port: int
    max_connections: int = 256
    clock: Callable[[], float] = time.monotonic
    _idle: list[_Connection] = field(default_factory=list)
    _open: int = 0

    async def send(self, request: bytes) -> int:
        """Send ``request`` (from :func:`post_request`); return the answer's status code."""
        connection = self._reusable() or await self._connect()
        try:
            connection.writer.write(request)
            status = await _read_answer(connection.reader)
        except _FAILURES as exc:
            self._close(connection)
            raise HttpError(f"request failed: {exc!r}") from None
        connection.idle_since = self.clock()
        self._idle.append(connection)
        return status

    def _reusable(self) -> _Connection | None:
        """The most recently used idle connection; those idle too long are closed."""
        stale_before = self.clock() - IDLE_REUSE_S
        while self._idle:
            connection = self._idle.pop()
            if connection.idle_since >= stale_before:
                return connection
            self._close(connection)
        return None

    async def _connect(self) -> _Connection:
        if self._open >= self.max_connections:
            raise HttpError(f"all {self.max_connections} connections are busy")
        self._open += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            self._open -= 1
            raise HttpError(f"cannot connect: {exc!r}") from None
        return _Connection(reader, writer)

    def _close(self, connection: _Connection) -> None:
        self._open -= 1
        connection.writer.close()

    async def close(self) -> None:
        for connection in self._idle:
            connection.writer.close()
        self._idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """Read one answer; return its status code (its body is read and dropped). Headers past
    the reader's limit (64 KiB) raise ``LimitOverrunError``."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            raise HttpError("chunked answers are not supported")
    if length:
        await reader.readexactly(length)
    return int(parts[1])

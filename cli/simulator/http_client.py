"""A lean asyncio HTTP/1.1 client for the simulator's ingest requests: a bounded pool of
keep-alive connections to one host, POST only, answers read by ``Content-Length`` (or chunks).

Thousands of readings a second from one process leave no room for a general client's costs
per request (several hundred microseconds of CPU in httpx, measured here); this one parses a
status line and a few headers. It serves the simulator's own requests to our own API, nothing
else: no redirects, no TLS, no proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


IDLE_MAX_S = 4.0
"""Keep-alive connections idle longer than this are closed rather than reused."""


class HttpTimeout(Exception):
    """No complete answer within the timeout."""


class HttpBroken(Exception):
    """The connection failed or the answer was not HTTP/1.1."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    sent_at: float = 0.0
    """Wall-clock seconds when the request left (after waiting for a free connection)."""
    seconds: float = 0.0
    """From then to the complete answer."""


class HttpPool:
    def __init__(self, host: str, port: int, *, size: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._gate = asyncio.Semaphore(size)
        self._idle: list[tuple[_Conn, float]] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body``; raises HttpTimeout or HttpBroken (the connection is then dropped).

        A kept-alive connection the server closed while it was idle fails before any answer;
        the request then goes once more on a new connection (uvicorn closes idle connections
        after 5 s; ones idle longer than :data:`IDLE_MAX_S` are not reused at all)."""
        async with self._gate:
            conn = self._reusable()
            if conn is not None:
                try:
                    return await self._attempt(conn, path, body, headers)
                except HttpBroken:
                    pass
            return await self._attempt(None, path, body, headers)

    def _reusable(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if now - since < IDLE_MAX_S:
                return conn
            _close(conn)
        return None

    async def _attempt(
        self, conn: _Conn | None, path: str, body: bytes, headers: dict[str, str]
    ) -> Answer:
        sent_at, started = time.time(), time.monotonic()
        try:
            if conn is None:
                conn = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.timeout_s
                )
            answer = await asyncio.wait_for(
                self._exchange(conn, path, body, headers), self.timeout_s
            )
        except TimeoutError as exc:
            _close(conn)
            raise HttpTimeout(f"no answer within {self.timeout_s}s") from exc
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            _close(conn)
            raise HttpBroken(str(exc) or type(exc).__name__) from exc
        except asyncio.CancelledError:  # the run ends mid-request: the connection is not reused
            _close(conn)
            raise
        if answer.headers.get("connection", "").lower() == "close":
            _close(conn)
        else:
            self._idle.append((conn, time.monotonic()))
        return dataclasses.replace(answer, sent_at=sent_at, seconds=time.monotonic() - started)

    async def close(self) -> None:
        while self._idle:
            _close(self._idle.pop()[0])

    async def _exchange(
        self, conn: _Conn, path: str, body: bytes, headers: dict[str, str]
    ) -> Answer:
        reader, writer = conn
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]  # fmt: skip
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return await read_answer(reader)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One HTTP/1.1 answer (raises ValueError when it is not one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    status = parts[1]
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Answer(int(status), headers, await _chunks(reader))
    length = int(headers.get("content-length", "0"))
    return Answer(int(status), headers, await reader.readexactly(length))


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _close(conn: _Conn | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError, RuntimeError):
            conn[1].close()

"""The latency benchmark's lean HTTP client against a small HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.http_load import IDLE_REUSE_S, HttpError, LeanClient, post_request


class Server:
    """Answers each request with the next of ``answers``; records what it received."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.bodies: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            self.bodies.append(await reader.readexactly(length))
            writer.write(self.answers.pop(0))
            await writer.drain()
            if not self.answers:
                break
        writer.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, LeanClient]]:
    server = Server([])
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    client = LeanClient("127.0.0.1", port, max_connections=2)
    yield server, client
    await client.close()
    listening.close()


def _answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_requests_reuse_a_kept_alive_connection_and_report_each_status(
    served: tuple[Server, LeanClient],
) -> None:
    server, client = served
    server.answers += [_answer("202 Accepted", b'{"ok":1}'), _answer("429 Too Many Requests")]
    request = post_request("127.0.0.1", 80, "/v1/readings", b'[{"a":1}]')
    assert await client.send(request) == 202
    assert await client.send(request) == 429
    assert server.bodies == [b'[{"a":1}]', b'[{"a":1}]']
    assert server.connections == 1


async def test_a_chunked_or_garbled_answer_is_an_error_not_a_status(
    served: tuple[Server, LeanClient],
) -> None:
    server, client = served
    server.answers += [
        _answer("200 OK", b"", "transfer-encoding: chunked"),
        b"SSH-2.0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n",
    ]
    request = post_request("127.0.0.1", 80, "/", b"{}")
    with pytest.raises(HttpError, match="chunked"):
        await client.send(request)
    with pytest.raises(HttpError, match="status line"):
        await client.send(request)
    with pytest.raises(HttpError, match="many"):
        await client.send(request)


async def test_busy_connections_open_new_ones_up_to_the_limit() -> None:
    client = LeanClient("127.0.0.1", 9, max_connections=0)
    with pytest.raises(HttpError, match="busy"):
        await client.send(post_request("127.0.0.1", 9, "/", b"{}"))


async def test_a_connection_idle_too_long_is_replaced_not_reused(
    served: tuple[Server, LeanClient],
) -> None:
    server, client = served
    now = [100.0]
    client.clock = lambda: now[0]
    server.answers += [_answer("202 Accepted")] * 3
    request = post_request("127.0.0.1", 80, "/", b"{}")
    assert await client.send(request) == 202
    now[0] += IDLE_REUSE_S / 2
    assert await client.send(request) == 202
    assert server.connections == 1, "recently used: reused"
    now[0] += IDLE_REUSE_S + 1
    assert await client.send(request) == 202
    assert server.connections == 2

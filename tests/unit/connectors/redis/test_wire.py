"""The sink's Redis wire: hiredis packing, reply parsing, and the connection's failure rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import hiredis
import pytest
import redis.exceptions

from connectors.redis import wire
from connectors.redis.errors import is_retriable
from connectors.redis.wire import (
    PACK_CHUNK,
    Command,
    RedisPipe,
    first_error,
    new_reader,
    pack,
    take_replies,
)


def test_commands_are_packed_as_one_resp_buffer() -> None:
    packed = pack([("HSET", "k", "f", b"v"), ("LTRIM", "l", 0, -1)])
    assert packed == (
        b"*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$1\r\nv\r\n"
        b"*4\r\n$5\r\nLTRIM\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n"
    )


def test_replies_split_anywhere_are_taken_only_when_complete() -> None:
    reader = new_reader()
    replies: list[object] = []
    stream = b":1\r\n$5\r\nhello\r\n-LOADING Redis is loading\r\n+OK\r\n"
    reader.feed(stream[:10])
    take_replies(reader, replies, 4)
    assert replies == [1]
    reader.feed(stream[10:])
    take_replies(reader, replies, 3)  # never more than wanted
    assert replies[:2] == [1, b"hello"] and len(replies) == 3
    error = first_error(replies)
    assert isinstance(error, redis.exceptions.BusyLoadingError) and is_retriable(error)


OOM = redis.exceptions.OutOfMemoryError


@pytest.mark.parametrize(
    ("reply", "kind", "retriable"),
    [
        ("READONLY You can't write", redis.exceptions.ReadOnlyError, True),
        ("NOSCRIPT No matching script", redis.exceptions.NoScriptError, True),
        ("OOM command not allowed when used memory > 'maxmemory'", OOM, True),
        ("MISCONF Redis is configured to save RDB snapshots", redis.exceptions.ResponseError, True),
        ("NOAUTH Authentication required.", redis.exceptions.AuthenticationError, True),
        ("WRONGTYPE Operation against a key", redis.exceptions.ResponseError, True),
    ],
)
def test_error_replies_become_redis_py_errors(
    reply: str, kind: type[Exception], retriable: bool
) -> None:
    reader = new_reader()
    reader.feed(f"-{reply}\r\n".encode())
    error = first_error([reader.gets()])
    assert type(error) is kind and is_retriable(error or Exception()) is retriable


def test_a_bug_is_not_an_outage() -> None:
    assert not is_retriable(ValueError("a bug in the sink"))


Answer = Callable[[list[bytes]], bytes]
"""A reply to a command; empty: hang up."""


class FakeRedis:
    """A server that answers each command by ``answer`` and records commands per connection."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections: list[list[list[bytes]]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        received: list[list[bytes]] = []
        self.connections.append(received)
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                received.append(command)
                reply = self.answer(command)
                if not reply:
                    writer.close()
                    return
                writer.write(reply)
            await writer.drain()
        writer.close()


Start = Callable[[Answer], Awaitable[tuple[FakeRedis, int]]]


@pytest.fixture
async def started() -> AsyncIterator[Start]:
    """Starts fake servers on free ports: (the fake, its port)."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> tuple[FakeRedis, int]:
        fake = FakeRedis(answer)
        server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        servers.append(server)
        return fake, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()


def ok(command: list[bytes]) -> bytes:
    return b":1\r\n"


async def test_a_pipe_connects_once_and_runs_its_connect_commands_first(started: Start) -> None:
    fake, port = await started(ok)
    pipe = RedisPipe("127.0.0.1", port, [("SELECT", 2)])
    assert await pipe.execute([("PUBLISH", "c", b"m"), ("PUBLISH", "c", b"n")]) == [1, 1]
    assert await pipe.execute([("PUBLISH", "c", b"o")]) == [1]
    await pipe.close()
    assert fake.connections[0] == [
        [b"SELECT", b"2"],
        [b"PUBLISH", b"c", b"m"],
        [b"PUBLISH", b"c", b"n"],
        [b"PUBLISH", b"c", b"o"],
    ]


async def test_an_error_reply_raises_after_every_reply_and_the_next_call_reconnects(
    started: Start,
) -> None:
    def noscript_once(command: list[bytes]) -> bytes:
        if command[0] == b"EVALSHA" and len(fake.connections) == 1:
            return b"-NOSCRIPT No matching script\r\n"
        return b":1\r\n"

    fake, port = await started(noscript_once)
    pipe = RedisPipe("127.0.0.1", port, [("SCRIPT", "LOAD", "return 1")])
    commands: list[Command] = [("EVALSHA", "sha", 0), ("PUBLISH", "c", b"m")]
    with pytest.raises(redis.exceptions.NoScriptError):
        await pipe.execute(commands)
    assert await pipe.execute(commands) == [1, 1]  # a new connection loaded the script again
    await pipe.close()
    assert [c[0] for c in fake.connections[0]] == [b"SCRIPT", b"EVALSHA", b"PUBLISH"]
    assert [c[0] for c in fake.connections[1]] == [b"SCRIPT", b"EVALSHA", b"PUBLISH"]


async def test_a_server_hanging_up_mid_batch_is_a_retriable_connection_error(
    started: Start,
) -> None:
    _, port = await started(lambda command: b":1\r\n" if command[0] == b"PING" else b"")
    pipe = RedisPipe("127.0.0.1", port)
    with pytest.raises(redis.exceptions.ConnectionError) as raised:
        await pipe.execute([("PING",), ("GET", "k")])
    assert is_retriable(raised.value)
    assert await pipe.execute([("PING",)]) == [1]  # reconnected
    await pipe.close()


async def test_a_cancelled_call_never_leaves_its_half_read_connection_for_the_next(
    started: Start,
) -> None:
    fake, port = await started(
        lambda command: b"$10\r\ntrunc" if command[0] == b"GET" else b":1\r\n"
    )
    pipe = RedisPipe("127.0.0.1", port)
    task = asyncio.create_task(pipe.execute([("GET", "k")]))
    await asyncio.sleep(0.05)
    assert not task.done()  # waits for the rest of the reply
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pipe.execute([("PING",)]) == [1]  # not the rest of the truncated reply
    await pipe.close()
    assert len(fake.connections) == 2


async def test_an_unreachable_server_is_a_retriable_connection_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(redis.exceptions.ConnectionError) as raised:
        await RedisPipe("127.0.0.1", port).execute([("PING",)])
    assert is_retriable(raised.value)


async def test_a_long_pipeline_gives_the_event_loop_turns_and_keeps_its_order(
    started: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, port = await started(ok)
    pipe = RedisPipe("127.0.0.1", port)
    await pipe.execute([("PING",)])  # connected: what follows is the pipeline alone
    events: list[str] = []

    def packing(commands: Sequence[Command]) -> bytes:
        events.append("pack")
        return pack(commands)

    async def other_task() -> None:
        events.append("other task")

    monkeypatch.setattr(wire, "pack", packing)
    commands: list[Command] = [("PUBLISH", "c", str(n)) for n in range(3 * PACK_CHUNK + 1)]
    waiting = asyncio.create_task(other_task())  # ready before the pipeline starts
    replies = await pipe.execute(commands)
    await waiting
    await pipe.close()
    assert events == ["pack", "other task", "pack", "pack", "pack"]  # a turn after a chunk
    assert replies == [1] * len(commands)
    sent = [[b"PUBLISH", b"c", str(n).encode()] for n in range(len(commands))]
    assert fake.connections[0][1:] == sent

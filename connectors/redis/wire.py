"""A pipelined Redis connection for the sink's hot path: hiredis packs and parses, nothing else.

redis-py's asyncio pipeline packs every command in Python and parses every reply through a
coroutine, several microseconds a command, which is most of what the Redis sink cost. Here a
batch of commands is packed by ``hiredis.pack_command`` (C), written as one buffer, and its
replies are parsed by one ``hiredis.Reader`` fed whatever the socket returns.

Contract of :meth:`RedisPipe.execute`: every reply is read before it returns or raises, and the
first error reply is raised as the redis-py exception of its kind (``LOADING`` is a
:class:`redis.exceptions.BusyLoadingError`, ...), so ``connectors.redis.errors.is_retriable``
judges it like any redis-py error. On any exception the connection is dropped: a reply might be
left unread (cancellation, a broken socket), and the next call reconnects and replays the
``on_connect`` commands (``SELECT``, ``SCRIPT LOAD``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Iterator, Sequence

import hiredis
import redis.exceptions

Arg = str | bytes | int | float
Command = tuple[Arg, ...]

_READ_SIZE = 1 << 16
_MORE = object()
"""What ``Reader.gets`` returns while a reply is incomplete."""

_ERRORS_BY_CODE: dict[str, type[redis.exceptions.RedisError]] = {
    "LOADING": redis.exceptions.BusyLoadingError,
    "READONLY": redis.exceptions.ReadOnlyError,
    "NOSCRIPT": redis.exceptions.NoScriptError,
    "TRYAGAIN": redis.exceptions.TryAgainError,
    "MASTERDOWN": redis.exceptions.MasterDownError,
    "OOM": redis.exceptions.OutOfMemoryError,
    "NOAUTH": redis.exceptions.AuthenticationError,
    "WRONGPASS": redis.exceptions.AuthenticationError,
    "NOPERM": redis.exceptions.NoPermissionError,
}


def reply_error(message: str) -> redis.exceptions.RedisError:
    """The redis-py exception for an error reply, by its code (its first word)."""
    code, _, text = message.partition(" ")
    kind = _ERRORS_BY_CODE.get(code)
    return kind(text) if kind is not None else redis.exceptions.ResponseError(message)


PACK_CHUNK = 500
"""Commands packed between two turns of the event loop."""


def pack(commands: Sequence[Command]) -> bytes:
    # hiredis' stub types the command as a 1-tuple; any tuple of arguments is what it takes.
    return b"".join([hiredis.pack_command(command) for command in commands])  # type: ignore[arg-type]


def packed_chunks(commands: Sequence[Command]) -> Iterator[bytes]:
    """``commands`` packed ``PACK_CHUNK`` at a time, as they are written."""
    for start in range(0, len(commands), PACK_CHUNK):
        yield pack(commands[start : start + PACK_CHUNK])


def new_reader() -> hiredis.Reader:
    return hiredis.Reader(replyError=reply_error, notEnoughData=_MORE)


def take_replies(reader: hiredis.Reader, replies: list[object], wanted: int) -> None:
    """Move complete replies from ``reader`` to ``replies``, up to ``wanted`` in all."""
    while len(replies) < wanted:
        reply = reader.gets()
        if reply is _MORE:
            return
        replies.append(reply)


def first_error(replies: Sequence[object]) -> redis.exceptions.RedisError | None:
    for reply in replies:
        if isinstance(reply, redis.exceptions.RedisError):
            return reply
    return None


class RedisPipe:
    """One connection to ``host:port`` (over TLS with ``tls``), opened on first use and after
    any failure."""

    def __init__(
        self,
        host: str,
        port: int,
        on_connect: Sequence[Command] = (),
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._on_connect = list(on_connect)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        """The replies of ``commands``; raises the first error reply."""
        return await self.execute_packed(packed_chunks(commands), len(commands))

    async def execute_packed(self, chunks: Iterable[bytes], count: int) -> list[object]:
        """The replies of ``count`` commands already packed in ``chunks`` (the event loop gets a
        turn between two chunks); raises the first error reply."""
        try:
            if self._streams is None:
                self._streams = await self._connect()
            replies = await self._exchange(self._streams, chunks, count)
        except BaseException:
            await self.close()
            raise
        return replies

    async def close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            streams = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"connecting to Redis: {exc}") from exc
        if self._on_connect:
            try:
                await self._exchange(
                    streams, packed_chunks(self._on_connect), len(self._on_connect)
                )
            except BaseException:
                streams[1].close()
                raise
        return streams

    @staticmethod
    async def _exchange(
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        chunks: Iterable[bytes],
        count: int,
    ) -> list[object]:
        stream_in, stream_out = streams
        for chunk in chunks:
            stream_out.write(chunk)
            # Packing thousands of commands at once held the event loop for tens of ms: a
            # turn before the next chunk is packed.
            await asyncio.sleep(0)
        await stream_out.drain()
        reader = new_reader()
        replies: list[object] = []
        while True:
            take_replies(reader, replies, count)
            if len(replies) == count:
                break
            data = await stream_in.read(_READ_SIZE)
            if not data:
                raise redis.exceptions.ConnectionError("Redis closed the connection")
            reader.feed(data)
        error = first_error(replies)
        if error is not None:
            raise error
        return replies

"""A streaming ``multipart/form-data`` reader: parts one after another, file bytes as they
arrive, never a whole file in memory or on a spool disk.

FastAPI's ``UploadFile`` parses the whole body (spooling files to temp files) before the route
runs, so a size limit could only be checked after the upload. Here python-multipart's push
parser is fed from ``request.stream()`` and the route pulls: :meth:`FormReader.next_part` for
the next part's headers, :meth:`FormReader.text` for a small field (bounded), and
:meth:`FormReader.data` for a file's bytes, which the blob store consumes while it enforces the
object's size limit. Memory per request is one network chunk plus one small field.

Malformed bodies are 422, a body that is not multipart 415; the parser bounds headers per part.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.media.errors import invalid, unsupported

MAX_PARTS = 64
"""Parts per request: fields and files together (a request has at most a dozen)."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    index: int
    """Position among the parts of this name (``files[2]`` is the third ``files`` part)."""

    @property
    def label(self) -> str:
        """How errors name it: ``files[2]`` for repeated file parts, else the name."""
        return f"{self.name}[{self.index}]" if self.filename is not None else self.name


class _Mark(enum.Enum):
    END = "end"  # of a part
    EOF = "eof"  # of the body


_Event = Part | bytes | _Mark


class FormReader:
    def __init__(self, request: Request) -> None:
        media_type, params = parse_options_header(request.headers.get("content-type"))
        if media_type != b"multipart/form-data":
            raise unsupported("content-type", "send multipart/form-data")
        boundary = params.get(b"boundary")
        if not boundary:
            raise invalid("content-type", "multipart/form-data without a boundary")
        self._stream = request.stream()
        self._events: deque[_Event] = deque()
        self._headers: dict[str, str] = {}
        self._field, self._value = b"", b""
        self._counts: dict[str, int] = {}
        self._parts = 0
        self._finished = False
        self._in_part = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": lambda: self._events.append(_Mark.END),
                "on_end": lambda: self._events.append(_Mark.EOF),
            },
        )

    async def next_part(self) -> Part | None:
        """The next part (skipping what is left of the current one), or None at the end."""
        while True:
            event = await self._next_event()
            if isinstance(event, Part):
                self._in_part = True
                return event
            if event is _Mark.EOF:
                return None

    async def data(self) -> AsyncIterator[bytes]:
        """The bytes of the current part, as they arrive."""
        while self._in_part:
            event = await self._next_event()
            if isinstance(event, bytes):
                yield event
            else:  # its end (a new part or the body's end cannot come before it)
                self._in_part = False

    async def text(self, part: Part, max_bytes: int) -> str:
        """The current part as UTF-8 text of at most ``max_bytes`` (422 naming it otherwise)."""
        collected = bytearray()
        async for chunk in self.data():
            collected += chunk
            if len(collected) > max_bytes:
                raise invalid(part.name, f"longer than {max_bytes} bytes")
        try:
            return collected.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise invalid(part.name, "not UTF-8 text") from exc

    async def drain(self, max_bytes: int) -> None:
        """Read and drop up to ``max_bytes`` more of the body, so that a client still sending
        gets to read the error answer (past that, the connection is closed on it)."""
        dropped = 0
        try:
            async for chunk in self._stream:
                dropped += len(chunk)
                if dropped > max_bytes:
                    return
        except Exception:  # noqa: BLE001, S110 - the client went away: nothing left to read
            pass

    async def _next_event(self) -> _Event:
        while not self._events:
            if self._finished:
                raise invalid(None, "the multipart body ended before its closing boundary")
            try:
                chunk = await anext(self._stream)
            except StopAsyncIteration:
                self._finished = True
                self._finalize()
                continue
            self._write(chunk)
        return self._events.popleft()

    def _write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise invalid(None, f"malformed multipart body: {exc}") from exc

    def _finalize(self) -> None:
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise invalid(None, f"malformed multipart body: {exc}") from exc

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise invalid(None, f"more than {MAX_PARTS} parts")

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise invalid(None, "a part without Content-Disposition: form-data; name=...")
        text = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        index = self._counts.get(text, 0)
        self._counts[text] = index + 1
        part = Part(
            name=text,
            filename=None if filename is None else filename.decode("utf-8", "replace"),
            content_type=self._headers.get("content-type"),
            index=index,
        )
        self._events.append(part)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(bytes(data[start:end]))

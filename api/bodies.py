"""Reading request bodies: media types (415), the size limit (413), NDJSON streams.

A body is never read past ``FLEET_API__MAX_BODY_BYTES``: a larger ``Content-Length`` is refused
before reading, and a chunked body is counted as it streams and refused the moment it passes the
limit. NDJSON (``application/x-ndjson``: one reading per line) is split into lines as it
arrives, so a stream with more than ``max_items`` readings is refused at the first line too many.
"""

from __future__ import annotations

from typing import Literal

from fastapi import Request

from api.problems import ProblemError
from schemas.errors import ValidationFailure

BodyKind = Literal["json", "ndjson"]
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def body_kind(request: Request, *, ndjson: bool) -> BodyKind:
    """``json`` or ``ndjson`` from ``Content-Type``; 415 for anything else."""
    kind = media_type(request)
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return "json"
    if ndjson and kind in NDJSON_TYPES:
        return "ndjson"
    accepted = "application/json or application/x-ndjson" if ndjson else "application/json"
    raise ProblemError(415, "Unsupported media type", f"send {accepted}, not {kind or 'nothing'}")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over ``limit`` bytes before reading it all."""
    _check_declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_ndjson(request: Request, limit: int, max_items: int) -> list[bytes]:
    """The non-blank lines of an NDJSON body, split while it streams in."""
    _check_declared_length(request, limit)
    lines: list[bytes] = []
    pending = b""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        *complete, pending = (pending + chunk).split(b"\n")
        _add_lines(lines, complete, max_items)
    _add_lines(lines, [pending], max_items)
    if not lines:
        raise ValidationFailure.single((), "empty body: at least one reading is required", "length")
    return lines


def _add_lines(lines: list[bytes], new: list[bytes], max_items: int) -> None:
    for line in new:
        line = line.strip()
        if not line:
            continue
        if len(lines) >= max_items:
            message = f"too many readings: more than {max_items} lines, at most {max_items} allowed"
            raise ValidationFailure.single((), message, "length")
        lines.append(line)


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)


def too_large(limit: int) -> ProblemError:
    return ProblemError(
        413, "Request too large", f"the body is over {limit} bytes; split it into batches"
    )

"""The streaming multipart reader: parts in order, file bytes as they arrive, clear 4xx."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from starlette.requests import Request

from api.media.multipart import MAX_PARTS, FormReader
from api.problems import ProblemError

BOUNDARY = "XyZ123"


def _body(parts: Sequence[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _request(body: bytes, chunk: int = 7, content_type: str | None = None) -> Request:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": index < len(pieces) - 1}
        for index, piece in enumerate(pieces)
    ]
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return messages.pop(0)

    ctype = content_type or f"multipart/form-data; boundary={BOUNDARY}"
    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", ctype.encode())]}
    return Request(scope, receive)


async def test_fields_and_files_come_in_order_with_their_bytes() -> None:
    payload = bytes(range(256)) * 40
    body = _body([("camera_id", None, b"cam-1"), ("files", "a.jpg", payload), ("files", "b", b"x")])
    reader = FormReader(_request(body))
    first = await reader.next_part()
    assert first is not None and (first.name, first.filename) == ("camera_id", None)
    assert await reader.text(first, 100) == "cam-1"
    second = await reader.next_part()
    assert second is not None and (second.name, second.filename, second.index) == (
        "files",
        "a.jpg",
        0,
    )
    chunks = [chunk async for chunk in reader.data()]
    assert b"".join(chunks) == payload
    assert len(chunks) > 1  # streamed, not collected
    third = await reader.next_part()
    assert third is not None and third.label == "files[1]"
    assert await reader.next_part() is None  # the unread third part is skipped


async def test_a_field_longer_than_its_bound_is_refused_naming_it() -> None:
    reader = FormReader(_request(_body([("meta", None, b"x" * 300)])))
    part = await reader.next_part()
    assert part is not None
    with pytest.raises(ProblemError) as caught:
        await reader.text(part, 100)
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["field"] == "meta"


async def test_not_multipart_is_415_and_no_boundary_is_422() -> None:
    with pytest.raises(ProblemError) as caught:
        FormReader(_request(b"{}", content_type="application/json"))
    assert caught.value.status == 415
    with pytest.raises(ProblemError) as caught:
        FormReader(_request(b"", content_type="multipart/form-data"))
    assert caught.value.status == 422


async def test_a_truncated_body_is_422_not_a_hang() -> None:
    body = _body([("files", "a.bin", b"abc" * 100)])[:-40]
    reader = FormReader(_request(body))
    part = await reader.next_part()
    assert part is not None
    with pytest.raises(ProblemError) as caught:
        [chunk async for chunk in reader.data()]
    assert caught.value.status == 422


async def test_too_many_parts_are_refused() -> None:
    body = _body([(f"f{i}", None, b"1") for i in range(MAX_PARTS + 1)])
    reader = FormReader(_request(body, chunk=4096))
    with pytest.raises(ProblemError) as caught:
        while await reader.next_part() is not None:
            pass
    assert caught.value.status == 422


async def test_a_part_without_a_name_is_refused() -> None:
    body = f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    reader = FormReader(_request(body.encode()))
    with pytest.raises(ProblemError) as caught:
        await reader.next_part()
    assert caught.value.status == 422


async def test_drain_reads_the_rest_of_the_body_up_to_its_bound() -> None:
    body = _body([("files", "a.bin", b"z" * 5000)])
    request = _request(body, chunk=100)
    reader = FormReader(request)
    await reader.next_part()
    await reader.drain(1_000_000)
    with pytest.raises(ProblemError):  # nothing is left to read
        [chunk async for chunk in reader.data()]

    bounded = FormReader(_request(body, chunk=100))
    await bounded.next_part()
    await bounded.drain(1000)  # stops after ~1000 bytes: the rest is still unread
    rest = [chunk async for chunk in bounded.data()]
    assert 3000 < len(b"".join(rest)) < 4100

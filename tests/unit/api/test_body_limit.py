"""Every body is bounded before authentication and parsing, by length or while it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app import create_app
from api.body_limit import BodyLimit
from schemas.settings import Settings

calls: list[str] = []


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Needs a credential (401 without one), then reads the whole body."""
    calls.append(scope["path"])
    headers = dict(scope["headers"])
    if b"x-api-key" not in headers:
        status, body = 401, b"no key"
    else:
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        status, body = 200, str(size).encode()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client() -> httpx.AsyncClient:
    limited = BodyLimit(app, default=1000, limits={"/upload": 5000})
    return httpx.AsyncClient(transport=httpx.ASGITransport(limited), base_url="http://t")


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_declared_length_over_the_limit_is_413_before_authentication() -> None:
    calls.clear()
    async with client() as http:
        response = await http.post("/api/v1/devices/metadata", content=b"x" * 1001)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "body"
    assert calls == []  # the app (auth, parsing) never saw it


async def test_a_streamed_body_is_refused_once_it_passes_the_limit() -> None:
    async with client() as http:
        response = await http.post("/admin", content=chunks(50, 100), headers={"x-api-key": "k"})
    assert response.status_code == 413
    assert "at most 1000 bytes" in response.json()["detail"]


async def test_bodies_within_the_limit_and_per_path_limits_pass() -> None:
    async with client() as http:
        small = await http.post("/admin", content=b"x" * 1000, headers={"x-api-key": "k"})
        upload = await http.post("/upload", content=chunks(4, 1000), headers={"x-api-key": "k"})
        unauthenticated = await http.post("/admin", content=b"{}")
    assert (small.status_code, small.text) == (200, "1000")
    assert (upload.status_code, upload.text) == (200, "4000")
    assert unauthenticated.status_code == 401


async def _status_of_post_declaring(api: ASGIApp, path: str, length: int) -> int:
    """POST to ``path`` declaring a body of ``length`` bytes that is never sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("the body was read")

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-length", str(length).encode()), (b"host", b"t")]
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await api(scope, receive, send)
    return int(sent[0]["status"])


async def test_the_app_refuses_a_huge_declared_body_on_every_route_kind_before_reading() -> None:
    api = create_app(Settings())
    for path in ["/api/v1/devices/metadata", "/api/v1/ingest/rtsp", "/api/v1/admin/devices"]:
        assert await _status_of_post_declaring(api, path, 300_000_000) == 413, path

"""A size limit on every request body, enforced before authentication and parsing.

The outermost layer of the app (pure ASGI): a ``Content-Length`` over the route's limit is
answered 413 before any byte of the body is read, and a body without one (chunked) is counted as
it streams and refused the moment it passes the limit. Routes keep their own, finer limits (a
batch's item count, one reading's size); this one guarantees that no route — the seed routes,
the admin API, RTSP capture requests — reads an unbounded body, whoever sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON


class _TooLarge(Exception):
    """The body passed its limit while the app was reading it."""


class BodyLimit:
    """``limits`` by exact path; ``default`` for every other path."""

    def __init__(self, app: ASGIApp, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit, declared)
            return
        counted = _Counted(receive, limit)
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted.receive, watched_send)
        except _TooLarge:
            if started:  # the app answered before reading it all: nothing more to say
                return
            await _refuse(send, limit, None)


class _Counted:
    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                raise _TooLarge
        return message


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, limit: int, declared: int | None) -> None:
    size = f"{declared} bytes" if declared is not None else "more"
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Payload too large",
        "status": 413,
        "detail": f"the request body is {size}; at most {limit} bytes are accepted here",
        "errors": [
            {"field": "body", "message": f"at most {limit} bytes", "type": "body_too_large"}
        ],
    }
    encoded = msgspec.json.encode(body)
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(encoded)).encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": encoded})

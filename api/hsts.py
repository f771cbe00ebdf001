"""Strict-Transport-Security on every answer while the API serves HTTPS itself.

Browsers (and the operator pages' clients) then refuse plain HTTP to this host for
``FLEET_API__HSTS_MAX_AGE_S``; behind a TLS-terminating proxy the proxy sets the header instead
(docs/security.md).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StrictTransportSecurity:
    """Pure ASGI middleware: adds the header to each HTTP response start."""

    def __init__(self, app: ASGIApp, max_age_s: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age_s}".encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, with_header)

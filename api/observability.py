"""Request ids, JSON logs, metrics and the bound on requests in flight: one ASGI middleware.

* ``X-Request-ID``: a client's id is kept when it is 1-128 characters of ``[A-Za-z0-9._:-]``
  (anything else is replaced, so logs never carry injected text), else a new one is made; it is
  echoed on every response, put in problem bodies (``request_id``) and in every log record
  written while the request is served.
* Bound: beyond ``FLEET_API__MAX_CONCURRENT_REQUESTS`` requests in flight the process answers
  503 + ``Retry-After`` at once instead of queueing without end; ``/health*`` and ``/metrics``
  are never refused (probes must see the process alive).
* JSON access log lines (method, route, status, duration, request id): for the answers
  ``FLEET_API__ACCESS_LOG`` names (``problems``: 4xx and 5xx, by default; ``all``; ``off``).
  Every request is counted in the metrics either way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal

from api.metrics import ApiMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_EXEMPT = ("/health", "/metrics")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other is ``other`` (a client cannot add label values)."""

AccessLog = Literal["all", "problems", "off"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
access_log = logging.getLogger("fleetstream.access")


def current_request_id() -> str | None:
    return request_id_var.get()


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        max_in_flight: int,
        retry_after_s: int,
        access_log: AccessLog = "problems",
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.log_from = {"all": 0, "problems": 400, "off": 1000}[access_log]
        """The lowest status written to the access log."""
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        """(route, method, status) -> its request counter and latency histogram: ``labels()``
        takes a lock and builds its key on every call."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        exempt = scope["path"].startswith(_EXEMPT)
        try:
            if not exempt and self.in_flight >= self.max_in_flight:
                await self._busy(send_with_id, request_id)
            else:
                await self._serve(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    async def _busy(self, send: Send, request_id: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Service unavailable",
                "status": 503,
                "detail": "this instance is serving as many requests as it may; retry shortly",
                "request_id": request_id,
            }
        ).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.retry_after),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        requests, latency = self._series_of(route, method, status)
        requests.inc()
        latency.observe(elapsed)
        if status in (401, 403):
            self.metrics.auth_failures.labels(str(status)).inc()
        if status >= self.log_from:
            access_log.info(
                "%s %s %s",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": elapsed * 1e3,
                },
            )

    def _series_of(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        found = self._series.get(key)
        if found is None:
            metrics = self.metrics
            found = (
                metrics.requests.labels(route, method, str(status)),
                metrics.latency.labels(route, method),
            )
            self._series[key] = found
        return found


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            text = bytes(value).decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any ``extra``."""

    _STANDARD = frozenset(
        logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
        | {"message", "asctime", "color_message", "taskName"}
    )

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the API process (uvicorn's ``log_config``): every
    logger writes JSON lines to stderr; uvicorn's own access log is replaced by ours."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }

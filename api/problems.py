"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

Clients always get the same shape: ``type``, ``title``, ``status``, ``detail`` and, for
validation errors, ``errors`` — a list of ``{"index"?, "field", "message", "type"}`` that names
the offending field (and, in a batch, the item's index).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.observability import current_request_id
from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure
from schemas.errors import BatchValidationFailure, FieldError, ValidationFailure

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger(__name__)


class ProblemError(Exception):
    """Raise from a route to answer with a problem document (and optional response headers,
    e.g. ``Retry-After`` or ``WWW-Authenticate``)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = headers


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(errors: Sequence[FieldError]) -> list[dict[str, Any]]:
    """``FieldError``s as JSON; a leading int in the location is the batch index."""
    out = []
    for error in errors:
        loc = list(error.loc)
        entry: dict[str, Any] = {}
        if loc and isinstance(loc[0], int):
            entry["index"] = loc.pop(0)
        entry.update(
            field=".".join(str(part) for part in loc) or None,
            message=error.message,
            type=error.type,
        )
        out.append(entry)
    return out


def install_problem_handlers(app: FastAPI, retry_after_s: int) -> None:
    retry = {"Retry-After": str(retry_after_s)}

    @app.exception_handler(ProblemError)
    async def on_problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(ValidationFailure)
    async def on_invalid(_: Request, exc: ValidationFailure) -> JSONResponse:
        extra: dict[str, Any] = {"errors": field_errors(exc.errors)}
        if isinstance(exc, BatchValidationFailure):
            extra["invalid_items"] = exc.failed_indexes
        return problem(422, "Invalid reading", exc.reason, **extra)

    @app.exception_handler(RequestValidationError)
    async def on_request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"]),
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        return problem(422, "Invalid request", "the request does not match the API", errors=errors)

    @app.exception_handler(ProducerBackpressure)
    async def on_backpressure(_: Request, exc: ProducerBackpressure) -> JSONResponse:
        detail = f"{exc}; retry after a pause, with the same Idempotency-Key"
        return problem(429, "Slow down", detail, headers=retry)

    @app.exception_handler(KafkaUnavailable)
    async def on_kafka_down(_: Request, exc: KafkaUnavailable) -> JSONResponse:
        log.warning("answering 503: %s", exc)
        detail = (
            "the event log did not confirm every reading of this request; retry it, with the "
            "same Idempotency-Key so that readings which did land are not stored twice"
        )
        return problem(503, "Service unavailable", detail, headers=retry)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "the server failed; the request was not accepted")

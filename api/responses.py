"""Response bodies of the ingest routes (pydantic models, for OpenAPI), and their fast encoding.

Routes build these answers as plain dicts encoded by msgspec (a 1,000-reading answer through
pydantic costs more than producing it); the models here document the same shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from fastapi import Response
from pydantic import BaseModel, Field

from api.problems import PROBLEM_JSON

_encode = msgspec.json.Encoder().encode


def json_response(body: Any, status_code: int) -> Response:
    return Response(_encode(body), status_code=status_code, media_type="application/json")


class ItemResult(BaseModel):
    index: int = Field(description="position of the reading in the request (array or NDJSON)")
    event_id: str
    status: Literal["accepted"] = "accepted"


class Accepted(BaseModel):
    """Every reading of the request is in Kafka (acked with acks=all)."""

    accepted: int
    event_ids: list[str]
    results: list[ItemResult]


class Problem(BaseModel):
    """RFC 9457 problem details; ``errors`` name the fields (and batch indexes)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    invalid_items: list[int] | None = None
    request_id: str | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting problem+json answers."""
    described = {
        401: "no credentials, an unknown token or a disabled device",
        403: "a reading of another device than the credentials'",
        404: "no such resource",
        413: "body (or one reading) too large",
        415: "unsupported Content-Type",
        422: "invalid body: the errors name each field (and item index)",
        429: "over the device's rate limit, or the producer queue is full (Retry-After)",
        503: "Kafka (or Redis, for an Idempotency-Key) did not confirm in time (Retry-After)",
    }
    return {
        status: {
            "description": described.get(status, "problem"),
            "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}},
        }
        for status in statuses
    }


INGEST_PROBLEMS = problems(401, 403, 413, 415, 422, 429, 503)


class SeedReadingResponse(BaseModel):
    """Seed 001's answer to one reading."""

    reading_id: str
    equipment_id: str
    status: Literal["received"] = "received"
    timestamp: datetime
    message: str = "Sensor data ingested successfully"


class SeedBatchResponse(BaseModel):
    """Seed 001's answer to a batch (all-or-nothing here: ``failed`` is always 0)."""

    total: int
    successful: int
    failed: int
    reading_ids: list[str]
    errors: list[dict[str, Any]]

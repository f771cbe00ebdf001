"""``POST /v1/readings``: one reading or a JSON array of readings, written to Kafka first.

202 means every reading of the request is in ``fleet.raw.v1`` (in the envelopes the batcher
grouped it into), acked by the broker with ``acks=all``. Any invalid item rejects the whole
request with 422 and a list of errors per item, so a device never has to work out which half
of a batch went in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status

from api.deps import BatcherDep, SettingsDep
from api.ingest import raw_items
from api.problems import ProblemError
from schemas.validation import decode_readings_with_raw

router = APIRouter(tags=["ingest"])

_EXAMPLE = {
    "device_id": "esp32-lobby-01",
    "timestamp": "2026-11-25T10:00:00Z",
    "sensors": {
        "ld2410": {"presence": True, "distance_cm": 120, "moving_energy": 40},
        "pir": {"motion_detected": True},
        "mq134": {"gas_concentration": 12.5},
    },
}


@router.post(
    "/v1/readings",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"example": _EXAMPLE}},
        }
    },
)
async def post_readings(
    request: Request,
    batcher: BatcherDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Accept one reading or an array; answer once Kafka holds all of them."""
    _require_json(request)
    body = await _read_body(request, settings.api.max_body_bytes)
    received_at = datetime.now(UTC)
    items = decode_readings_with_raw(body, now=received_at, max_items=settings.api.max_batch_items)
    event_ids, encoded = raw_items(
        items, received_at=received_at, source="http", idempotency_key=idempotency_key
    )
    await batcher.submit(encoded)
    return {"accepted": len(event_ids), "event_ids": event_ids}


def _require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ProblemError(
            415, "Unsupported media type", f"send application/json, not {media_type or 'nothing'}"
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413, "Request too large", f"the body is over {limit} bytes; split it into batches"
    )

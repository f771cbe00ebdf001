"""``POST /v1/readings``: one reading, a JSON array, or an NDJSON stream, written to Kafka first.

2xx means every reading of the request is in ``fleet.raw.v1`` (in the envelopes the batcher
grouped it into), acked by the broker with ``acks=all``. A batch is all-or-nothing: any invalid
item rejects the whole request with 422 and the errors of every bad item by index, so a device
never has to work out which half of a batch went in. The answer lists each item's event id.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.bodies import body_kind, read_body, read_ndjson
from api.edge import IDEMPOTENCY_KEY_PARAMETER, ingest_request
from api.lean_route import LeanRoute
from api.openapi import json_body, ref
from api.responses import INGEST_PROBLEMS, Accepted, json_response
from schemas.validation import decode_items, decode_readings_with_raw

router = APIRouter(tags=["ingest"], route_class=LeanRoute)
ROUTE = "/v1/readings"

_EXAMPLE = {
    "device_id": "esp32-lobby-01",
    "timestamp": "2026-11-25T10:00:00Z",
    "sensors": {
        "ld2410": {"presence": True, "distance_cm": 120, "moving_energy": 40},
        "pir": {"motion_detected": True},
        "mq134": {"gas_concentration": 12.5},
    },
}
_BODY = json_body(
    {"oneOf": [ref("Reading"), {"type": "array", "items": ref("Reading"), "minItems": 1}]},
    _EXAMPLE,
    **{
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "one Reading (JSON) per line"}
        }
    },
)


@router.post(
    ROUTE,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=INGEST_PROBLEMS,
    openapi_extra={**_BODY, "parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def post_readings(request: Request) -> Response:
    """Accept one reading, a JSON array or NDJSON lines; answer once Kafka holds all of them.

    Authenticate with ``X-API-Key: <device token>`` or ``Authorization: Bearer <token>``; every
    reading must carry the device's own ``device_id``."""
    edge, principal, idempotency_key = await ingest_request(request)
    api = edge.settings.api
    kind = body_kind(request, ndjson=True)
    window = edge.window()
    now, ahead, age, limits = window.now, window.max_future, window.max_age, window.limits
    if kind == "ndjson":
        lines = await read_ndjson(request, api.max_body_bytes, api.max_batch_items)
        items = decode_items(lines, now=now, max_future=ahead, max_age=age, limits=limits)
    else:
        body = await read_body(request, api.max_body_bytes)
        items = decode_readings_with_raw(
            body,
            now=now,
            max_items=api.max_batch_items,
            max_future=ahead,
            max_age=age,
            limits=limits,
        )
    event_ids = await edge.accept(
        items,
        principal=principal,
        received_at=window.now,
        idempotency_key=idempotency_key,
        route=ROUTE,
    )
    results = [
        {"index": index, "event_id": event_id, "status": "accepted"}
        for index, event_id in enumerate(event_ids)
    ]
    return json_response(
        {"accepted": len(event_ids), "event_ids": event_ids, "results": results},
        status.HTTP_202_ACCEPTED,
    )

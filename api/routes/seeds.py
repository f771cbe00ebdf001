"""The seed services' routes, on the same ingest path as ``/v1/readings``.

Each route reads its seed's payload (:mod:`schemas.seed_payloads`), translates it into canonical
readings, validates those with the shared validator (errors are reported in the seed's own field
names), and hands them to :class:`api.edge.Edge`: the same authentication, rate limits,
idempotency, Kafka acks and answers (503/429) as every ingest route. Answers keep the seeds'
shapes and status codes.

* seed 000: ``POST /api/v1/ingest/chirpstack`` (a ChirpStack uplink, ``X-API-Key``);
* seed 001: ``POST /api/v1/sensors/ingest``, ``POST /api/v1/sensors/ingest/batch``,
  ``GET /api/v1/sensors/{equipment_id}/latest``, ``GET /``;
* seed 002: ``POST /api/v1/sensor-data``, ``POST /api/v1/sensor-data/batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, cast

import asyncpg
import msgspec
from fastapi import APIRouter, Path, Query, Request, Response, status

from api.auth import authenticate_device, bearer_token, is_admin_token
from api.bodies import body_kind, read_body
from api.edge import Edge, EdgeDep, IngestDeviceDep
from api.openapi import json_body, ref
from api.problems import ProblemError
from api.responses import INGEST_PROBLEMS, SeedBatchResponse, SeedReadingResponse, problems
from api.responses import json_response as respond
from api.routes.readings import IdempotencyKey
from connectors.postgres.latest import latest_per_sensor, recent_readings
from schemas.errors import FieldError, Loc, ValidationFailure
from schemas.readings import DEVICE_ID_PATTERN, Reading
from schemas.seed_payloads import (
    ChirpstackUplink,
    EquipmentBatch,
    EquipmentReading,
    chirpstack_reading,
    equipment_reading,
    relocate,
    seed000_loc,
    seed001_loc,
)
from schemas.validation import decode_items, decode_json

router = APIRouter(tags=["seed routes"])

_equipment = msgspec.json.Decoder(EquipmentReading)
_equipment_batch = msgspec.json.Decoder(EquipmentBatch)
_uplink = msgspec.json.Decoder(ChirpstackUplink)
_readings = msgspec.json.Decoder(list[msgspec.Raw])

_EQUIPMENT_EXAMPLE = {
    "equipment_id": "RADAR-LOC-001",
    "temperature": 85.5,
    "vibration": 0.45,
    "pressure": 3.2,
    "humidity": 65.0,
    "voltage": 220.0,
    "timestamp": "2026-11-25T10:00:00Z",
}
_ESP32_EXAMPLE = {
    "device_id": "esp32-lobby-01",
    "timestamp": "2026-11-25T10:00:00Z",
    "sensors": {"pir": {"motion_detected": True}, "mq134": {"gas_concentration": 12.5}},
}
_UPLINK_EXAMPLE = {
    "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    "time": "2026-11-25T10:00:00Z",
    "deviceInfo": {"devEui": "0101010101010101", "deviceName": "lobby-radar"},
    "fCnt": 10,
    "fPort": 1,
    "data": "AQ==",
    "object": {"pir": {"motion_detected": True}},
}
# Pydantic's regex engine has no \Z; its $ matches only at the very end.
_DEVICE_ID = DEVICE_ID_PATTERN.replace("\\Z", "$")


async def _validated(
    edge: Edge,
    readings: Sequence[bytes | msgspec.Raw],
    rename: Callable[[Loc], Loc],
) -> tuple[datetime, list[tuple[Reading, msgspec.Raw]]]:
    window = edge.window()
    try:
        items = decode_items(
            readings, now=window.now, max_future=window.max_future, max_age=window.max_age
        )
    except ValidationFailure as exc:
        raise relocate(exc, rename) from exc
    return window.now, items


async def _body(edge: Edge, request: Request) -> bytes:
    body_kind(request, ndjson=False)
    return await read_body(request, edge.settings.api.max_body_bytes)


def _single(failure: ValidationFailure) -> ValidationFailure:
    """A one-item batch failure as the failure of a single reading (no index)."""
    stripped = [
        FieldError(e.loc[1:], e.message, e.type) if e.loc and isinstance(e.loc[0], int) else e
        for e in failure.errors
    ]
    return ValidationFailure(stripped)


# ---- seed 001 --------------------------------------------------------------------------------


@router.post(
    "/api/v1/sensors/ingest",
    status_code=status.HTTP_201_CREATED,
    response_model=SeedReadingResponse,
    responses=INGEST_PROBLEMS,
    openapi_extra=json_body(ref("EquipmentReading"), _EQUIPMENT_EXAMPLE),
)
async def seed001_ingest(
    request: Request,
    edge: EdgeDep,
    principal: IngestDeviceDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Seed 001: one equipment reading (``equipment_id`` ``TYPE-LOCATION-NNN``, temperature
    -50..200 °C), stored as the reading of device ``equipment_id`` (upper-cased)."""
    payload = decode_json(_equipment, await _body(edge, request))
    try:
        received_at, items = await _validated(edge, [equipment_reading(payload)], seed001_loc)
    except ValidationFailure as exc:
        raise _single(exc) from exc
    (event_id,) = await edge.accept(
        items,
        principal=principal,
        received_at=received_at,
        idempotency_key=idempotency_key,
        route="/api/v1/sensors/ingest",
    )
    reading = items[0][0]
    answer = {
        "reading_id": event_id,
        "equipment_id": reading.device_id,
        "status": "received",
        "timestamp": (reading.timestamp or received_at).isoformat(),
        "message": "Sensor data ingested successfully",
    }
    return respond(answer, status.HTTP_201_CREATED)


@router.post(
    "/api/v1/sensors/ingest/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=SeedBatchResponse,
    responses=INGEST_PROBLEMS,
    openapi_extra=json_body(ref("EquipmentBatch"), {"readings": [_EQUIPMENT_EXAMPLE]}),
)
async def seed001_ingest_batch(
    request: Request,
    edge: EdgeDep,
    principal: IngestDeviceDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Seed 001: ``{"readings": [...]}``, 1-100 readings, all-or-nothing (422 names each bad
    item by index)."""
    batch = decode_json(_equipment_batch, await _body(edge, request))
    translated: list[bytes] = []
    errors = []
    for index, raw in enumerate(batch.readings):
        try:
            translated.append(equipment_reading(decode_json(_equipment, raw)))
        except ValidationFailure as exc:
            errors += [e.with_prefix("readings", index) for e in exc.errors]
    if errors:
        raise ValidationFailure(errors)
    try:
        received_at, items = await _validated(edge, translated, seed001_loc)
    except ValidationFailure as exc:
        raise ValidationFailure(
            [e.with_prefix("readings") for e in exc.errors], exc.reason
        ) from exc
    event_ids = await edge.accept(
        items,
        principal=principal,
        received_at=received_at,
        idempotency_key=idempotency_key,
        route="/api/v1/sensors/ingest/batch",
    )
    answer = {
        "total": len(event_ids),
        "successful": len(event_ids),
        "failed": 0,
        "reading_ids": event_ids,
        "errors": [],
    }
    return respond(answer, status.HTTP_201_CREATED)


@router.get(
    "/api/v1/sensors/{equipment_id}/latest",
    responses=problems(401, 403, 422, 503),
)
async def seed001_latest(
    request: Request,
    equipment_id: Annotated[str, Path(pattern=_DEVICE_ID, max_length=128)],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Seed 001: the device's ``limit`` newest readings (``readings``, newest first, equipment
    values also flat as in seed 001), and the newest value of each sensor type (``latest``).
    Read from Postgres, so a reading shows up once the worker has stored it. The device's own
    token, or the admin token."""
    await _may_read(request, equipment_id)
    pool = cast(asyncpg.Pool, request.app.state.pg_pool)
    try:
        recent = await recent_readings(pool, equipment_id, limit)
        per_sensor = await latest_per_sensor(pool, equipment_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ProblemError(
            503,
            "Service unavailable",
            "the readings store is not reachable; retry shortly",
            headers={"Retry-After": str(request.app.state.settings.api.retry_after_s)},
        ) from exc
    readings = [
        {
            "reading_id": r.event_id,
            "timestamp": r.ts.isoformat(),
            "received_at": r.received_at.isoformat(),
            **(r.sensors.get("equipment") or {}),
            "sensors": r.sensors,
        }
        for r in recent
    ]
    latest = {
        sensor: {"reading_id": v.event_id, "timestamp": v.ts.isoformat(), "values": v.values}
        for sensor, v in per_sensor.items()
    }
    return {
        "equipment_id": equipment_id,
        "count": len(readings),
        "readings": readings,
        "latest": latest,
    }


async def _may_read(request: Request, device_id: str) -> None:
    token = bearer_token(request)
    if token is not None and is_admin_token(token, request.app.state.settings):
        return
    await authenticate_device(request, device_id)


@router.get("/")
async def service_info(request: Request) -> dict[str, str]:
    """Seed 001: service information."""
    return {
        "service": request.app.title,
        "version": request.app.version,
        "status": "running",
        "docs": "/docs",
        "health": "/health",
        "api_prefix": "/api/v1",
    }


# ---- seed 002 --------------------------------------------------------------------------------


@router.post(
    "/api/v1/sensor-data",
    status_code=status.HTTP_202_ACCEPTED,
    responses=INGEST_PROBLEMS,
    openapi_extra=json_body(ref("Reading"), _ESP32_EXAMPLE),
)
async def seed002_sensor_data(
    request: Request,
    edge: EdgeDep,
    principal: IngestDeviceDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Seed 002: one ESP32 reading (``sensors.ld2410/pir/mq134``), the canonical shape."""
    body = await _body(edge, request)
    received_at, items = await _validated_one(edge, body)
    (event_id,) = await edge.accept(
        items,
        principal=principal,
        received_at=received_at,
        idempotency_key=idempotency_key,
        route="/api/v1/sensor-data",
    )
    answer = {
        "message": "Sensor data accepted",
        "message_id": event_id,
        "device_id": items[0][0].device_id,
        "timestamp": received_at.isoformat(),
    }
    return respond(answer, status.HTTP_202_ACCEPTED)


async def _validated_one(
    edge: Edge, body: bytes
) -> tuple[datetime, list[tuple[Reading, msgspec.Raw]]]:
    try:
        return await _validated(edge, [body], lambda loc: loc)
    except ValidationFailure as exc:
        raise _single(exc) from exc


@router.post(
    "/api/v1/sensor-data/batch",
    status_code=status.HTTP_202_ACCEPTED,
    responses=INGEST_PROBLEMS,
    openapi_extra=json_body(
        {"type": "array", "items": ref("Reading"), "minItems": 1, "maxItems": 100},
        [_ESP32_EXAMPLE],
    ),
)
async def seed002_sensor_data_batch(
    request: Request,
    edge: EdgeDep,
    principal: IngestDeviceDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Seed 002: an array of 1-100 ESP32 readings (all-or-nothing: 422 names each bad item)."""
    readings = decode_json(_readings, await _body(edge, request))
    if not 1 <= len(readings) <= 100:
        message = f"a batch holds 1 to 100 readings, not {len(readings)}"
        raise ValidationFailure.single((), message, "length")
    received_at, items = await _validated(edge, readings, lambda loc: loc)
    event_ids = await edge.accept(
        items,
        principal=principal,
        received_at=received_at,
        idempotency_key=idempotency_key,
        route="/api/v1/sensor-data/batch",
    )
    results = [
        {"device_id": reading.device_id, "status": "accepted", "message_id": event_id}
        for (reading, _), event_id in zip(items, event_ids, strict=True)
    ]
    answer = {"message": "Batch processed", "total": len(results), "results": results}
    return respond(answer, status.HTTP_202_ACCEPTED)


# ---- seed 000 --------------------------------------------------------------------------------


@router.post(
    "/api/v1/ingest/chirpstack",
    status_code=status.HTTP_202_ACCEPTED,
    responses=INGEST_PROBLEMS,
    openapi_extra=json_body(ref("ChirpstackUplink"), _UPLINK_EXAMPLE),
)
async def seed000_chirpstack(
    request: Request,
    edge: EdgeDep,
    principal: IngestDeviceDep,
    event: Annotated[str | None, Query(max_length=32, pattern="^[A-Za-z_]+$")] = None,
) -> Response:
    """Seed 000: a ChirpStack uplink (its HTTP integration, ``X-API-Key`` = the device's token).
    The decoded ``object`` holds the sensors; ``deduplicationId`` is the event id, so
    ChirpStack's retries are stored once. Join events are acknowledged and not stored."""
    uplink = decode_json(_uplink, await _body(edge, request))
    device_id = uplink.deviceInfo.devEui.upper()
    received_at = edge.window().now
    if (event or "").lower() == "join" or (event is None and uplink.is_join):
        answer: dict[str, Any] = {"success": True, "device_id": device_id, "event": "join"}
        answer["received_at"] = received_at.isoformat()
        return respond(answer, status.HTTP_202_ACCEPTED)
    try:
        received_at, items = await _validated(edge, [chirpstack_reading(uplink)], seed000_loc)
    except ValidationFailure as exc:
        raise _single(exc) from exc
    (event_id,) = await edge.accept(
        items,
        principal=principal,
        received_at=received_at,
        idempotency_key=None,
        route="/api/v1/ingest/chirpstack",
    )
    answer = {
        "success": True,
        "device_id": device_id,
        "dev_eui": device_id,
        "event": "uplink",
        "event_id": event_id,
        "received_at": received_at.isoformat(),
    }
    return respond(answer, status.HTTP_202_ACCEPTED)

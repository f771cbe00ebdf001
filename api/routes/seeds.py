"""The seed services' routes, on the same ingest path as ``/v1/readings``.

Each ingest route reads its seed's payload (:mod:`schemas.seed_payloads`), translates it into
canonical readings, validates those with the shared validator (errors are reported in the seed's
own field names), and hands them to :class:`api.edge.Edge`: the same authentication, rate limits,
idempotency, Kafka acks and answers (503/429) as every ingest route. Answers keep the seeds'
shapes and status codes. One path does that for every route; :data:`ROUTES` says per route how
it reads its payload, reports errors and answers.

* seed 000: ``POST /api/v1/ingest/chirpstack`` (a ChirpStack uplink, ``X-API-Key``);
* seed 001: ``POST /api/v1/sensors/ingest``, ``POST /api/v1/sensors/ingest/batch``,
  ``GET /api/v1/sensors/{equipment_id}/latest``, ``GET /``;
* seed 002: ``POST /api/v1/sensor-data``, ``POST /api/v1/sensor-data/batch``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, NamedTuple, Protocol, TypeVar, cast

import asyncpg
import msgspec
from fastapi import APIRouter, Path, Query, Request, Response, status

from api.auth import authenticate_device, bearer_token, is_admin_token
from api.bodies import body_kind, read_body
from api.edge import IDEMPOTENCY_KEY_PARAMETER, Edge, EdgeDep, IngestDeviceDep, ingest_request
from api.lean_route import LeanRoute
from api.openapi import json_body, ref
from api.problems import ProblemError
from api.responses import INGEST_PROBLEMS, SeedBatchResponse, SeedReadingResponse, problems
from api.responses import json_response as respond
from connectors.postgres.latest import latest_per_sensor, recent_readings
from schemas.devices import Device
from schemas.errors import FieldError, Loc, ValidationFailure
from schemas.readings import DEVICE_ID_PATTERN, Reading
from schemas.seed_payloads import (
    ChirpstackUplink,
    EquipmentBatch,
    EquipmentReading,
    chirpstack_reading,
    equipment_device_id,
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


P = TypeVar("P")
Readings = Sequence[bytes | msgspec.Raw]
"""Canonical readings' JSON, as the shared validator takes them."""
Endpoint = Callable[..., Awaitable[Response]]


class Accepted(NamedTuple):
    """What a route answers from: its validated readings and their event ids, acked by Kafka."""

    items: list[tuple[Reading, msgspec.Raw]]
    event_ids: list[str]
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class SeedRoute(Generic[P]):
    """One seed ingest route: how it reads its payload, reports errors and answers."""

    path: str
    name: str
    """The endpoint's name (its OpenAPI summary and operation id)."""
    doc: str
    """The endpoint's description."""
    status_code: int
    parse: Callable[[bytes], P]
    """The body as the seed's payload; raises ValidationFailure (seed field names)."""
    readings: Callable[[P], Readings]
    """The payload's canonical readings; raises ValidationFailure (seed field names)."""
    rename: Callable[[Loc], Loc]
    """A canonical error location in the seed's words."""
    reported: Callable[[ValidationFailure], ValidationFailure]
    """How a failure of the canonical validator is reported, after ``rename``."""
    answer: Callable[[Accepted], dict[str, Any]]
    body: dict[str, Any]
    """The OpenAPI request body (``openapi_extra``)."""
    handler: Callable[[SeedRoute[P]], Endpoint]
    """Builds the endpoint; its parameters are the headers and query FastAPI reads."""
    response_model: Any = None


async def _ingest(
    route: SeedRoute[P],
    edge: Edge,
    principal: Device | None,
    payload: P,
    idempotency_key: str | None,
) -> Response:
    """Validate the payload's readings, hand them to the edge, answer once Kafka has them."""
    readings = route.readings(payload)
    window = edge.window()
    try:
        items = decode_items(
            readings,
            now=window.now,
            max_future=window.max_future,
            max_age=window.max_age,
            limits=window.limits,
        )
    except ValidationFailure as exc:
        raise route.reported(relocate(exc, route.rename)) from exc
    event_ids = await edge.accept(
        items,
        principal=principal,
        received_at=window.now,
        idempotency_key=idempotency_key,
        route=route.path,
    )
    answer = route.answer(Accepted(items, event_ids, window.now))
    return respond(answer, route.status_code)


async def _body(edge: Edge, request: Request) -> bytes:
    body_kind(request, ndjson=False)
    return await read_body(request, edge.settings.api.max_body_bytes)


def _keyed(route: SeedRoute[P]) -> Endpoint:
    """The endpoint of a route that takes an ``Idempotency-Key``."""

    async def endpoint(request: Request) -> Response:
        edge, principal, idempotency_key = await ingest_request(request)
        payload = route.parse(await _body(edge, request))
        return await _ingest(route, edge, principal, payload, idempotency_key)

    endpoint.__doc__ = route.doc
    return endpoint


def _chirpstack(route: SeedRoute[ChirpstackUplink]) -> Endpoint:
    """The endpoint of ChirpStack's events: a join (``?event=join``, or without ``event`` an
    uplink with neither frame counter nor data) is acknowledged and not stored. ChirpStack
    sends no ``Idempotency-Key``; its ``deduplicationId`` is the event id."""

    async def endpoint(
        request: Request,
        edge: EdgeDep,
        principal: IngestDeviceDep,
        event: Annotated[str | None, Query(max_length=32, pattern="^[A-Za-z_]+$")] = None,
    ) -> Response:
        uplink = route.parse(await _body(edge, request))
        if (event or "").lower() == "join" or (event is None and uplink.is_join):
            received_at = edge.window().now
            answer: dict[str, Any] = {
                "success": True,
                "device_id": uplink.deviceInfo.devEui.upper(),
                "event": "join",
                "received_at": received_at.isoformat(),
            }
            return respond(answer, route.status_code)
        return await _ingest(route, edge, principal, uplink, None)

    endpoint.__doc__ = route.doc
    return endpoint


def _single(failure: ValidationFailure) -> ValidationFailure:
    """A one-item batch failure as the failure of a single reading (no index)."""
    stripped = [
        FieldError(e.loc[1:], e.message, e.type) if e.loc and isinstance(e.loc[0], int) else e
        for e in failure.errors
    ]
    return ValidationFailure(stripped)


def _under_readings(failure: ValidationFailure) -> ValidationFailure:
    """Seed 001's batch errors, under ``readings`` as its body has them."""
    return ValidationFailure([e.with_prefix("readings") for e in failure.errors], failure.reason)


def _as_is(failure: ValidationFailure) -> ValidationFailure:
    return failure


def _same_loc(loc: Loc) -> Loc:
    return loc


def _equipment_reading(body: bytes) -> EquipmentReading:
    return decode_json(_equipment, body)


def _equipment_batch_readings(batch: EquipmentBatch) -> Readings:
    """Every reading of a seed 001 batch translated, or each bad one named by index."""
    translated: list[bytes] = []
    errors = []
    for index, raw in enumerate(batch.readings):
        try:
            translated.append(equipment_reading(decode_json(_equipment, raw)))
        except ValidationFailure as exc:
            errors += [e.with_prefix("readings", index) for e in exc.errors]
    if errors:
        raise ValidationFailure(errors)
    return translated


def _esp32_batch(body: bytes) -> Readings:
    readings = decode_json(_readings, body)
    if not 1 <= len(readings) <= 100:
        message = f"a batch holds 1 to 100 readings, not {len(readings)}"
        raise ValidationFailure.single((), message, "length")
    return readings


def _equipment_answer(accepted: Accepted) -> dict[str, Any]:
    (event_id,), reading = accepted.event_ids, accepted.items[0][0]
    return {
        "reading_id": event_id,
        "equipment_id": reading.device_id,
        "status": "received",
        "timestamp": (reading.timestamp or accepted.received_at).isoformat(),
        "message": "Sensor data ingested successfully",
    }


def _equipment_batch_answer(accepted: Accepted) -> dict[str, Any]:
    event_ids = accepted.event_ids
    return {
        "total": len(event_ids),
        "successful": len(event_ids),
        "failed": 0,
        "reading_ids": event_ids,
        "errors": [],
    }


def _esp32_answer(accepted: Accepted) -> dict[str, Any]:
    (event_id,) = accepted.event_ids
    return {
        "message": "Sensor data accepted",
        "message_id": event_id,
        "device_id": accepted.items[0][0].device_id,
        "timestamp": accepted.received_at.isoformat(),
    }


def _esp32_batch_answer(accepted: Accepted) -> dict[str, Any]:
    results = [
        {"device_id": reading.device_id, "status": "accepted", "message_id": event_id}
        for (reading, _), event_id in zip(accepted.items, accepted.event_ids, strict=True)
    ]
    return {"message": "Batch processed", "total": len(results), "results": results}


def _uplink_answer(accepted: Accepted) -> dict[str, Any]:
    (event_id,), device_id = accepted.event_ids, accepted.items[0][0].device_id
    return {
        "success": True,
        "device_id": device_id,
        "dev_eui": device_id,
        "event": "uplink",
        "event_id": event_id,
        "received_at": accepted.received_at.isoformat(),
    }


ROUTES: tuple[SeedRoute[Any], ...] = (
    SeedRoute[EquipmentReading](
        path="/api/v1/sensors/ingest",
        name="seed001_ingest",
        doc="Seed 001: one equipment reading (``equipment_id`` ``TYPE-LOCATION-NNN``, temperature "
        "-50..200 °C), stored as the reading of device ``equipment_id`` (upper-cased).",
        status_code=status.HTTP_201_CREATED,
        parse=_equipment_reading,
        readings=lambda payload: [equipment_reading(payload)],
        rename=seed001_loc,
        reported=_single,
        answer=_equipment_answer,
        body=json_body(ref("EquipmentReading"), _EQUIPMENT_EXAMPLE),
        handler=_keyed,
        response_model=SeedReadingResponse,
    ),
    SeedRoute[EquipmentBatch](
        path="/api/v1/sensors/ingest/batch",
        name="seed001_ingest_batch",
        doc='Seed 001: ``{"readings": [...]}``, 1-100 readings, all-or-nothing (422 names each '
        "bad item by index).",
        status_code=status.HTTP_201_CREATED,
        parse=lambda body: decode_json(_equipment_batch, body),
        readings=_equipment_batch_readings,
        rename=seed001_loc,
        reported=_under_readings,
        answer=_equipment_batch_answer,
        body=json_body(ref("EquipmentBatch"), {"readings": [_EQUIPMENT_EXAMPLE]}),
        handler=_keyed,
        response_model=SeedBatchResponse,
    ),
    SeedRoute[bytes](
        path="/api/v1/sensor-data",
        name="seed002_sensor_data",
        doc="Seed 002: one ESP32 reading (``sensors.ld2410/pir/mq134``), the canonical shape.",
        status_code=status.HTTP_202_ACCEPTED,
        parse=lambda body: body,
        readings=lambda body: [body],
        rename=_same_loc,
        reported=_single,
        answer=_esp32_answer,
        body=json_body(ref("Reading"), _ESP32_EXAMPLE),
        handler=_keyed,
    ),
    SeedRoute[Readings](
        path="/api/v1/sensor-data/batch",
        name="seed002_sensor_data_batch",
        doc="Seed 002: an array of 1-100 ESP32 readings (all-or-nothing: 422 names each bad item).",
        status_code=status.HTTP_202_ACCEPTED,
        parse=_esp32_batch,
        readings=lambda readings: readings,
        rename=_same_loc,
        reported=_as_is,
        answer=_esp32_batch_answer,
        body=json_body(
            {"type": "array", "items": ref("Reading"), "minItems": 1, "maxItems": 100},
            [_ESP32_EXAMPLE],
        ),
        handler=_keyed,
    ),
    SeedRoute[ChirpstackUplink](
        path="/api/v1/ingest/chirpstack",
        name="seed000_chirpstack",
        doc="Seed 000: a ChirpStack uplink (its HTTP integration, ``X-API-Key`` = the device's "
        "token). The decoded ``object`` holds the sensors; ``deduplicationId`` is the event id, "
        "so ChirpStack's retries are stored once. Join events are acknowledged and not stored.",
        status_code=status.HTTP_202_ACCEPTED,
        parse=lambda body: decode_json(_uplink, body),
        readings=lambda uplink: [chirpstack_reading(uplink)],
        rename=seed000_loc,
        reported=_single,
        answer=_uplink_answer,
        body=json_body(ref("ChirpstackUplink"), _UPLINK_EXAMPLE),
        handler=_chirpstack,
    ),
)
"""The seed ingest routes (seed 001, 002, 000), registered in this order."""


def _openapi_extra(route: SeedRoute[Any]) -> dict[str, Any]:
    """The route's body, and the ``Idempotency-Key`` header where its endpoint reads one."""
    if route.handler is _keyed:
        return {**route.body, "parameters": [IDEMPOTENCY_KEY_PARAMETER]}
    return route.body


for _route in ROUTES:
    router.add_api_route(
        _route.path,
        _route.handler(_route),
        methods=["POST"],
        name=_route.name,
        status_code=_route.status_code,
        response_model=_route.response_model,
        responses=INGEST_PROBLEMS,
        openapi_extra=_openapi_extra(_route),
        route_class_override=LeanRoute if _route.handler is _keyed else None,
    )


# ---- seed 001: reads -------------------------------------------------------------------------


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
    token, or the admin token. The id is read as ingest stores it (:func:`_stored_id`), so
    ``pump-a1-001`` finds the readings posted as ``pump-a1-001`` and stored as
    ``PUMP-A1-001``."""
    equipment_id = _stored_id(request, equipment_id)
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


class _DeviceIds(Protocol):
    def get(self, record_id: str, /) -> Device | None: ...


def _stored_id(request: Request, equipment_id: str) -> str:
    """The id as registered when the registry knows it as written; else normalised like seed
    001's ingest routes store equipment ids (upper-cased), so the same id finds the same
    readings whichever case a client writes it in."""
    devices = cast(_DeviceIds, request.app.state.device_cache)
    if devices.get(equipment_id) is not None:
        return equipment_id
    return equipment_device_id(equipment_id)


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

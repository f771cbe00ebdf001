"""Liveness, readiness and metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ProducerDep
from api.devices import registry_readiness
from api.media.context import Media
from api.metrics import ApiMetrics
from connectors.redis.idempotency import IdempotencyStore

router = APIRouter(tags=["health"])

_SERVING = ("kafka", "device_cache")
"""Checks that take the instance out of service; the others only make it ``degraded``."""


@router.get("/health")
async def health() -> dict[str, Any]:
    """Liveness: the process serves requests."""
    return {"status": "ok", "time": datetime.now(UTC).isoformat()}


@router.get("/health/ready")
async def ready(request: Request, producer: ProducerDep) -> JSONResponse:
    """Readiness: a Kafka broker answers and the device cache has caught up, so devices can be
    authenticated and their events written (else 503). Postgres (admin routes, the latest
    query), Redis (Idempotency-Key checks) and the blob store (media uploads) are reported too
    but only make the answer
    ``degraded``: ingest does not need them, and taking every instance out of a load balancer
    during a database outage would stop ingest as well."""
    checks = {"kafka": await producer.ping(), **await registry_readiness(request.app)}
    idempotency = getattr(request.app.state, "idempotency", None)
    if idempotency is not None:
        checks["redis"] = await cast(IdempotencyStore, idempotency).ping()
    media = getattr(request.app.state, "media", None)
    if media is not None:  # the blob store (seed 004's storage_writable): media routes only
        checks["blob_store"] = await cast(Media, media).blob.ping()
    serving = all(ok for name, ok in checks.items() if name in _SERVING)
    state = ("ok" if all(checks.values()) else "degraded") if serving else "unavailable"
    return JSONResponse({"status": state, **checks}, status_code=200 if serving else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (text exposition format)."""
    registry = cast(ApiMetrics, request.app.state.metrics).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

"""Liveness and readiness probes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import ProducerDep
from api.devices import registry_readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, Any]:
    """Liveness: the process serves requests."""
    return {"status": "ok", "time": datetime.now(UTC).isoformat()}


@router.get("/health/ready")
async def ready(request: Request, producer: ProducerDep) -> JSONResponse:
    """Readiness: a Kafka broker answers and the device cache has caught up, so devices can be
    authenticated and their events written (else 503). Postgres is reported too but only makes
    the answer ``degraded``: ingest does not need it, only the admin routes do, and taking every
    instance out of a load balancer during a database outage would stop ingest as well."""
    checks = {"kafka": await producer.ping(), **await registry_readiness(request.app)}
    serving = all(ok for name, ok in checks.items() if name != "postgres")
    state = ("ok" if all(checks.values()) else "degraded") if serving else "unavailable"
    return JSONResponse({"status": state, **checks}, status_code=200 if serving else 503)

"""Liveness and readiness probes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ProducerDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, Any]:
    """Liveness: the process serves requests."""
    return {"status": "ok", "time": datetime.now(UTC).isoformat()}


@router.get("/health/ready")
async def ready(producer: ProducerDep) -> JSONResponse:
    """Readiness: a Kafka broker answers, so accepted events can be written."""
    kafka_ok = await producer.ping()
    status = 200 if kafka_ok else 503
    return JSONResponse(
        {"status": "ok" if kafka_ok else "unavailable", "kafka": kafka_ok}, status_code=status
    )

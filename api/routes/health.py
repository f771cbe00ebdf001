"""Liveness, readiness and metrics, and the seeds' probes when their profiles are on.

* ``GET /health``: liveness. With seed 003's or 004's profile on it also carries the dependency
  fields those seeds name (:func:`seed_health`): one document with every field the profiles on
  ask for, still 200 (a liveness probe that failed on a database outage would restart every
  instance and stop ingest as well; the seeds state no status code).
* ``GET /health/ready``: readiness (seed 001's path).
* ``GET /ready``: the same readiness, mounted only with seed 002's profile on (its Kubernetes
  ``readinessProbe``; the seed states the path, not the body).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.deps import ProducerDep, SettingsDep
from api.devices import registry_readiness
from api.media.context import Media
from api.metrics import ApiMetrics
from api.problems import problem
from connectors.kafka.producer import EventProducer
from connectors.prometheus import UNAUTHORIZED_DETAIL, render, scrape_allowed
from connectors.redis.idempotency import IdempotencyStore

router = APIRouter(tags=["health"])
seed002_router = APIRouter(tags=["health"])
"""``/ready``: included by the app factory with seed 002's profile on."""

_SERVING = ("kafka", "device_cache")
"""Checks that take the instance out of service; the others only make it ``degraded``."""
CHECK_TIMEOUT_S = 2.0
"""A dependency that has not answered by then counts as down: a probe never hangs."""

SEED_HEALTH_FIELDS: dict[str, tuple[str, ...]] = {
    "003": ("db", "storage_writable", "redis"),
    "004": ("db", "storage_writable"),
}
"""The dependency fields each seed's ``/health`` names. Seed 004 documents ``db`` and
``storage_writable``; seed 003 says its health "checks database, storage, and Redis
connectivity" without naming fields, so it gets seed 004's names and ``redis``."""


@router.get("/health")
async def health(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """Liveness: the process serves requests. With seed 003's or 004's profile on, also the
    dependency fields they name (``status`` ``degraded`` when one is false, still 200)."""
    now = datetime.now(UTC).isoformat()
    fields = health_fields(settings.compat.profiles())
    if not fields:
        return {"status": "ok", "time": now}
    return await seed_health(request.app, fields, now)


def health_fields(profiles: frozenset[str]) -> tuple[str, ...]:
    """The dependency fields of ``/health`` for the profiles on, in a stable order."""
    wanted = {name for seed in profiles for name in SEED_HEALTH_FIELDS.get(seed, ())}
    return tuple(name for name in ("db", "storage_writable", "redis") if name in wanted)


async def seed_health(app: FastAPI, fields: tuple[str, ...], now: str) -> dict[str, Any]:
    """Seed 004's document (``status``, ``db``, ``storage_writable``, ``time``) plus any
    further field another profile names. A resource this process has not opened is false."""
    results = await asyncio.gather(*(_bounded(_PROBES[name](app)) for name in fields))
    checks = dict(zip(fields, results, strict=True))
    return {"status": "ok" if all(results) else "degraded", **checks, "time": now}


async def _bounded(check: Awaitable[bool]) -> bool:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return False


async def _postgres(app: FastAPI) -> bool:
    return (await registry_readiness(app)).get("postgres", False)


async def _blob_store(app: FastAPI) -> bool:
    media = getattr(app.state, "media", None)
    return media is not None and await cast(Media, media).blob.ping()


async def _redis(app: FastAPI) -> bool:
    idempotency = getattr(app.state, "idempotency", None)
    return idempotency is not None and await cast(IdempotencyStore, idempotency).ping()


_PROBES: dict[str, Callable[[FastAPI], Awaitable[bool]]] = {
    "db": _postgres,
    "storage_writable": _blob_store,
    "redis": _redis,
}


@router.get("/health/ready")
async def ready(request: Request, producer: ProducerDep) -> JSONResponse:
    """Readiness: a Kafka broker answers and the device cache has caught up, so devices can be
    authenticated and their events written (else 503). Postgres (admin routes, the latest
    query), Redis (Idempotency-Key checks) and the blob store (media uploads) are reported too
    but only make the answer
    ``degraded``: ingest does not need them, and taking every instance out of a load balancer
    during a database outage would stop ingest as well."""
    return await readiness(request.app, producer)


@seed002_router.get("/ready")
async def seed002_ready(request: Request, producer: ProducerDep) -> JSONResponse:
    """Seed 002's readiness probe: the answer of ``/health/ready`` (200 ready, 503 not)."""
    return await readiness(request.app, producer)


async def readiness(app: FastAPI, producer: EventProducer) -> JSONResponse:
    checks = {"kafka": await producer.ping(), **await registry_readiness(app)}
    idempotency = getattr(app.state, "idempotency", None)
    if idempotency is not None:
        checks["redis"] = await cast(IdempotencyStore, idempotency).ping()
    media = getattr(app.state, "media", None)
    if media is not None:  # the blob store (seed 004's storage_writable): media routes only
        checks["blob_store"] = await cast(Media, media).blob.ping()
    serving = all(ok for name, ok in checks.items() if name in _SERVING)
    state = ("ok" if all(checks.values()) else "degraded") if serving else "unavailable"
    return JSONResponse({"status": state, **checks}, status_code=200 if serving else 503)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus metrics of the API (text exposition format; every process's when it runs
    several), as ``FLEET_METRICS__ACCESS`` lets (:mod:`connectors.prometheus`)."""
    if not scrape_allowed(settings, request.headers.get("Authorization")):
        return problem(
            401, "Unauthorized", UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": "Bearer"}
        )
    body, content_type = render(cast(ApiMetrics, request.app.state.metrics).exposition())
    return Response(body, media_type=content_type)

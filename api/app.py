"""The FastAPI app factory: ``create_app(settings)`` builds an app with its own producer.

The lifespan opens the Kafka producer before the first request and flushes it on shutdown, so
tests and benchmarks can build apps with other settings side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from api.body_limit import BodyLimit
from api.compat_auth import install_seed_error_handler
from api.device_models import IMPORT_MAX_BODY_BYTES
from api.devices import registry_resources
from api.dry_runs import DryRunner
from api.edge import Edge
from api.flows import flow_resources
from api.hsts import StrictTransportSecurity
from api.live import LiveFeed
from api.media.resources import media_resources
from api.metrics import ApiMetrics
from api.observability import EdgeMiddleware
from api.openapi import install_openapi
from api.problems import install_problem_handlers
from api.routes import admin_devices, alerts, flows, health, media, readings, seeds, status, ws
from connectors.kafka.batcher import BatcherLimits, EnvelopeBatcher
from connectors.kafka.producer import EventProducer, edge_producer_config
from connectors.redis.clients import async_client
from connectors.redis.idempotency import IdempotencyStore
from connectors.redis.keys import RedisKeys
from connectors.redis.status import StatusReader
from schemas.clock import Clock, utc_now
from schemas.settings import Settings, get_settings
from streams.runtime import tune_gc


def served_app() -> FastAPI:
    """The app ``fleetstream api`` serves, built in each of its processes: garbage collection
    tuned for a process that allocates per request (``FLEET_GC_GEN0_THRESHOLD``), then
    :func:`create_app` with the environment's settings."""
    settings = get_settings()
    tune_gc(settings.gc_gen0_threshold)
    return create_app(settings)


def create_app(settings: Settings | None = None, clock: Clock = utc_now) -> FastAPI:
    """The API; ``clock`` gives "now" to the edge (received times, the timestamp window)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = EventProducer(edge_producer_config(settings, "fleetstream-api"))
        await producer.start()
        app.state.producer = producer
        app.state.batcher = _batcher(settings, producer)
        store_queue_depth = metrics.watch_producer(producer.queue_length)
        sampler = _sample_every(QUEUE_SAMPLE_S, store_queue_depth) if store_queue_depth else None
        app.state.idempotency = _idempotency(settings)
        app.state.status_reader = StatusReader(_redis(settings), RedisKeys(settings.redis.prefix))
        app.state.live_feed = _live_feed(settings)
        app.state.live_feed.start()
        try:
            async with (
                registry_resources(app, settings),  # device registry: pool, cache
                flow_resources(app, settings),  # flow registry, alerts
                media_resources(app, settings),  # blob store, RTSP captures (needs the pool)
                ws.seed002_server(app, settings),  # seed 002's WebSocket port (its profile on)
            ):
                yield
        finally:
            if sampler is not None:
                sampler.cancel()
            await app.state.dry_runner.close()
            await app.state.live_feed.stop()
            await app.state.batcher.drain()
            await producer.stop()
            await app.state.idempotency.close()
            await app.state.status_reader.close()

    app = FastAPI(
        title="fleetstream",
        summary="Kafka-first ingest for device fleets",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks look for a configured provider on every request; the
        # API's telemetry is its Prometheus metrics and JSON logs (docs/api.md).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = ApiMetrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.edge = Edge(settings, app.state, metrics, clock)
    app.state.dry_runner = DryRunner(  # starts its processes when a dry run needs one
        timeout_s=settings.api.dry_run_timeout_s, at_once=settings.api.dry_runs_at_once
    )
    install_problem_handlers(app, settings.api.retry_after_s)
    install_seed_error_handler(app)  # seed 002's own 401 bodies, under its profile
    app.add_middleware(  # inside EdgeMiddleware, which counts its 413s
        BodyLimit,
        default=settings.api.max_body_bytes,
        limits={
            **media.upload_body_limits(settings.media),
            admin_devices.IMPORT_PATH: IMPORT_MAX_BODY_BYTES,
        },
    )
    app.add_middleware(
        EdgeMiddleware,
        metrics=metrics,
        max_in_flight=settings.api.max_concurrent_requests,
        retry_after_s=settings.api.retry_after_s,
        access_log=settings.api.access_log,
    )
    if settings.api.tls_certfile:  # outermost: every answer over HTTPS carries it
        app.add_middleware(StrictTransportSecurity, max_age_s=settings.api.hsts_max_age_s)
    app.include_router(readings.router)
    app.include_router(seeds.router)
    app.include_router(health.router)
    if "002" in settings.compat.profiles():
        app.include_router(health.seed002_router)  # seed 002's /ready
    app.include_router(admin_devices.router)
    app.include_router(admin_devices.devices_router)
    app.include_router(status.router)
    app.include_router(ws.router)
    app.include_router(flows.router)
    app.include_router(alerts.router)
    app.include_router(media.router)
    install_openapi(app)
    return app


QUEUE_SAMPLE_S = 1.0
"""How often a process of several stores its producer queue depth for the shared metrics."""


def _sample_every(period_s: float, sample: Callable[[], None]) -> asyncio.Task[None]:
    async def sampling() -> None:
        while True:
            sample()
            await asyncio.sleep(period_s)  # a schedule, not a wait for a condition

    return asyncio.create_task(sampling(), name="producer-queue-sampler")


def _live_feed(settings: Settings) -> LiveFeed:
    topics = settings.topics
    return LiveFeed(settings.kafka.bootstrap_servers, topics.curated, topics.device_status)


def _idempotency(settings: Settings) -> IdempotencyStore:
    """Redis answers within a second or the request gets 503: a hung Redis must not hang
    ingest (only requests with an Idempotency-Key need it)."""
    return IdempotencyStore(_redis(settings), settings.api.idempotency_ttl_s)


def _redis(settings: Settings) -> Redis:
    return async_client(settings.redis, socket_timeout=1.0, socket_connect_timeout=1.0)


def _batcher(settings: Settings, producer: EventProducer) -> EnvelopeBatcher:
    raw, limits = settings.topics.raw, BatcherLimits.of(settings.kafka)
    # The partition count is asked of the broker on the first request, so the API starts (and
    # answers 503) while Kafka is away.
    return EnvelopeBatcher(producer, raw, None, limits)

"""One MQTT front instance: the device listener, a health and metrics endpoint, the registry.

Several instances serve side by side: each listens with ``SO_REUSEPORT`` (the kernel spreads
connections over the processes on one port) or on a port of its own, follows the registry
topic itself and produces with its own producer; none holds state another needs. A stopping
instance closes its listener, PUBACKs what Kafka takes of what is in flight, and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.kafka.batcher import BatcherLimits, EnvelopeBatcher
from connectors.kafka.device_cache import DeviceCache
from connectors.kafka.producer import EventProducer, edge_producer_config
from connectors.mqtt.front.connection import Connection
from connectors.mqtt.front.ingest import (
    NOT_AUTHORIZED,
    SEED_002_TOPIC,
    Anonymous,
    Ingest,
    Limiter,
)
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.messages import TopicMatcher
from connectors.prometheus import UNAUTHORIZED_DETAIL, render, scrape_allowed
from connectors.schema_registry import install_contracts
from schemas.settings import MqttFrontSettings, Settings

log = logging.getLogger(__name__)

PACKET_OVERHEAD = 64 * 1024
"""Bytes a PUBLISH may carry beyond its payload (topic, properties)."""
DRAIN_S = 10.0
"""How long a stopping front waits for Kafka to ack what its devices sent."""
HANDSHAKE_S = 10.0
"""How long a TLS client may take to finish its handshake before it is dropped."""
RECHECK_S = 1.0
"""How often live connections are checked against the registry (disabled devices leave)."""


class Front:
    def __init__(self, settings: Settings, ingest: Ingest, metrics: FrontMetrics) -> None:
        self.settings, self.ingest, self.metrics = settings, ingest, metrics
        self.sessions: dict[str, Connection] = {}
        self.started_at = datetime.now(UTC)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        front = self.settings.mqtt_front
        connection = Connection(
            reader,
            writer,
            self.ingest,
            metrics=self.metrics,
            clock=lambda: datetime.now(UTC),
            max_packet_bytes=self.settings.mqtt.max_payload_bytes + PACKET_OVERHEAD,
            receive_maximum=front.receive_maximum,
        )
        await connection.serve(self.sessions)

    async def recheck(self) -> None:
        """Disconnect devices disabled, rotated or deleted since they connected."""
        while True:
            await asyncio.sleep(RECHECK_S)
            for connection in list(self.sessions.values()):
                admitted = connection.admitted
                if admitted is not None and not self.ingest.still_allowed(admitted.device):
                    self.metrics.refused("revoked")
                    connection.kick(NOT_AUTHORIZED)

    def describe(self) -> dict[str, Any]:
        """Who this front is and its numbers since it started: what the operator views show."""
        front = self.settings.mqtt_front
        return {
            **self.metrics.snapshot(),
            "sessions": len(self.sessions),
            "listening": listeners(front),
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(),
        }

    def health(self) -> web.Application:
        app = web.Application()

        async def health(_: web.Request) -> web.Response:
            caught_up = self.ingest.registry.caught_up
            return web.json_response(
                {"status": "ok" if caught_up else "loading", **self.describe()},
                status=200 if caught_up else 503,
            )

        async def metrics(request: web.Request) -> web.Response:
            if not scrape_allowed(self.settings, request.headers.get("Authorization")):
                raise web.HTTPUnauthorized(
                    text=UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": "Bearer"}
                )
            body, content_type = render(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": content_type})

        app.router.add_get("/health", health)
        app.router.add_get("/metrics", metrics)
        return app


def listeners(settings: MqttFrontSettings) -> list[str]:
    """The front's listeners as URLs: plain ``mqtt://`` and TLS ``mqtts://``."""
    found = [f"mqtt://{settings.host}:{settings.port}"] if settings.plain else []
    return found + ([f"mqtts://{settings.host}:{settings.tls_port}"] if settings.tls else [])


async def listen(front: Front) -> dict[str, asyncio.Server]:
    """The plain listener and the TLS one, as the settings ask, by what they are called."""
    settings = front.settings.mqtt_front
    servers: dict[str, asyncio.Server] = {}
    if settings.plain:
        servers[listeners(settings)[0]] = await asyncio.start_server(
            front.handle, settings.host, settings.port, reuse_port=True
        )
    if settings.tls:
        context = tls_context(
            Path(settings.tls_certfile), Path(settings.tls_keyfile), settings.tls_client_cafile
        )
        servers[listeners(settings)[-1]] = await asyncio.start_server(
            front.handle, settings.host, settings.tls_port, ssl=context, reuse_port=True,
            ssl_handshake_timeout=HANDSHAKE_S,
        )  # fmt: skip
    return servers


def tls_context(certfile: Path, keyfile: Path, client_cafile: str = "") -> ssl.SSLContext:
    """A server context of TLS 1.2 and later with Python's default ciphers; with
    ``client_cafile``, it asks devices for a certificate of that CA (optional: devices with
    tokens connect as before; a certificate that does not verify fails the handshake)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if client_cafile:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cafile=client_cafile)
    return context


def anonymous_publishers(settings: Settings, limiter: Limiter | None) -> Anonymous | None:
    """Seed 002's anonymous publishers when its profile is on (and a limiter to charge them
    to); logged, with the networks they may come from."""
    if "002" not in settings.compat.profiles():
        return None
    if limiter is None:
        log.warning("compat: seed 002 MQTT without credentials is off: no rate limiter given")
        return None
    networks = settings.compat.networks()
    log.info(
        "compat: seed 002 topic %s accepts auth mode none from %s (anyone there can publish "
        "as any registered device)",
        SEED_002_TOPIC,
        ", ".join(map(str, networks)) or "no network (FLEET_COMPAT__TRUSTED_NETWORKS is empty)",
    )
    return Anonymous(networks, TopicMatcher([SEED_002_TOPIC]), limiter)


async def serve(settings: Settings, stop: asyncio.Event, limiter: Limiter | None = None) -> None:
    """Serve devices until ``stop`` is set; ``limiter`` charges seed 002's anonymous
    publishers (without one they are not served)."""
    await asyncio.to_thread(install_contracts, settings)  # dead letters in their topic's format
    front_settings = settings.mqtt_front
    client_id = f"fleetstream-mqtt-front-{front_settings.port}"
    producer = EventProducer(edge_producer_config(settings, client_id))
    await producer.start()
    batcher = EnvelopeBatcher(producer, settings.topics.raw, None, BatcherLimits.of(settings.kafka))
    registry = DeviceCache(settings.kafka.bootstrap_servers, settings.topics.devices)
    registry.start()
    ingest = Ingest(
        registry=registry,
        matcher=TopicMatcher(settings.mqtt.topic_patterns),
        batcher=batcher,
        produce=producer.produce_all,
        deadletter_topic=settings.topics.deadletter,
        max_items=settings.mqtt.max_batch_items,
        max_bytes=settings.mqtt.max_payload_bytes,
        limits=settings.generic.limits(),
        anonymous=anonymous_publishers(settings, limiter),
    )
    front = Front(settings, ingest, FrontMetrics())
    servers = await listen(front)
    runner = web.AppRunner(front.health(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, front_settings.host, front_settings.health_port, reuse_port=True)
    await site.start()
    recheck = asyncio.create_task(front.recheck())
    log.info(
        "MQTT front on %s (health and metrics on :%d)",
        ", ".join(servers), front_settings.health_port,
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        recheck.cancel()
        for server in servers.values():
            server.close()
        leaving = [c.leave(0x8B, DRAIN_S) for c in front.sessions.values()]  # 0x8B: shutting down
        await asyncio.gather(*leaving)
        for server in servers.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 10)
        await runner.cleanup()
        await registry.stop()
        await batcher.drain()
        await producer.stop()

"""The device registry resources of one API process, opened by the app's lifespan.

* a Postgres pool for the admin routes, made with ``min_size=0`` so that the API starts, and
  ingests, while Postgres is down (admin routes answer 503 meanwhile);
* the registry publisher (``fleet.devices.v1``, ``acks=all``);
* the :class:`DeviceCache` that authenticates devices. Startup waits up to
  ``FLEET_AUTH__CACHE_CATCHUP_TIMEOUT_S`` for it to catch up, then serves anyway: device requests
  get 503 until it has (e.g. while Kafka is down), everything else works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast

from fastapi import Depends, FastAPI, Request

from connectors.kafka.device_cache import DeviceCache
from connectors.kafka.registry import RegistryPublisher
from connectors.mqtt.credentials import device_credentials
from connectors.postgres.devices import DeviceStore
from connectors.postgres.pool import create_pool
from connectors.registry import DeviceRegistry
from schemas.settings import Settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def registry_resources(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    postgres, kafka = settings.postgres, settings.kafka
    pool = await create_pool(postgres, min_size=0, max_size=postgres.pool_max_size)
    publisher = RegistryPublisher(
        kafka.bootstrap_servers,
        settings.topics.devices,
        delivery_timeout_ms=kafka.delivery_timeout_ms,
    )
    cache = DeviceCache(kafka.bootstrap_servers, settings.topics.devices)
    cache.start()
    app.state.device_registry = DeviceRegistry(
        DeviceStore(pool), publisher, device_credentials(settings.mqtt)
    )
    app.state.device_cache = cache
    app.state.pg_pool = pool  # also read by the seed 001 "latest" route
    try:
        if not await cache.wait_caught_up(settings.auth.cache_catchup_timeout_s):
            log.warning(
                "device cache has not read %s to its end yet; device requests get 503 until then",
                settings.topics.devices,
            )
        yield
    finally:
        await cache.stop()
        await asyncio.to_thread(publisher.close)
        await pool.close()


async def registry_readiness(app: FastAPI) -> dict[str, bool]:
    """Checks of the registry resources, for ``/health/ready``: ``{}`` when the app was built
    without its lifespan (unit tests that inject their own doubles)."""
    registry = getattr(app.state, "device_registry", None)
    cache = getattr(app.state, "device_cache", None)
    checks: dict[str, bool] = {}
    if cache is not None:
        checks["device_cache"] = bool(cache.caught_up)
    if registry is not None:
        checks["postgres"] = await cast(DeviceRegistry, registry).store.ping()
    return checks


async def get_registry(request: Request) -> DeviceRegistry:
    return cast(DeviceRegistry, request.app.state.device_registry)


RegistryDep = Annotated[DeviceRegistry, Depends(get_registry)]

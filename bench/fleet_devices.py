"""The devices a benchmark registers for its run (through the registry, as the admin API does)
and removes with their rows after it. Imports are late: ``bench`` modules load without the
services' clients until a scenario runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from schemas.settings import Settings

if TYPE_CHECKING:
    from connectors.registry import DeviceRegistry


@asynccontextmanager
async def _registry(settings: Settings, broker_passwords: bool) -> AsyncIterator[DeviceRegistry]:
    from connectors.kafka.registry import RegistryPublisher
    from connectors.mqtt.credentials import BrokerCredentials
    from connectors.postgres.devices import DeviceStore
    from connectors.postgres.pool import create_pool
    from connectors.registry import DeviceRegistry

    pool = await create_pool(settings.postgres, min_size=0, max_size=2)
    publisher = RegistryPublisher(
        settings.kafka.bootstrap_servers,
        settings.topics.devices,
        delivery_timeout_ms=settings.kafka.delivery_timeout_ms,
    )
    credentials = BrokerCredentials(settings.mqtt) if broker_passwords else None
    try:
        yield DeviceRegistry(DeviceStore(pool), publisher, credentials)
    finally:
        publisher.close()
        await pool.close()


async def register(
    settings: Settings, devices: Sequence[str], *, broker_passwords: bool = False
) -> dict[str, str]:
    """Each device registered (row, registry topic, and a Mosquitto password when asked):
    its token."""
    from schemas.devices import NewDevice

    async with _registry(settings, broker_passwords) as registry:
        tokens = {}
        for device_id in devices:
            _, tokens[device_id] = await registry.create(NewDevice(device_id=device_id))
        return tokens


async def remove(
    settings: Settings, devices: Sequence[str], *, broker_passwords: bool = False
) -> None:
    """The devices deleted, and the rows and Redis keys their readings made."""
    from bench.context import delete_run_data
    from connectors.postgres.devices import DeviceNotFound
    from connectors.postgres.pool import create_pool

    async with _registry(settings, broker_passwords) as registry:
        for device_id in devices:
            with suppress(DeviceNotFound):
                await registry.delete(device_id)
    pool = await create_pool(settings.postgres, min_size=0, max_size=1)
    try:
        async with pool.acquire() as db:
            await delete_run_data(db, settings.redis, devices)
    finally:
        await pool.close()

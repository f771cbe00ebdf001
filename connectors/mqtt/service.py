"""One bridge process: Kafka producer, envelope batcher, the bridge and the credential sync."""

from __future__ import annotations

import asyncio
import logging

from connectors.kafka.batcher import BatcherLimits, EnvelopeBatcher
from connectors.kafka.producer import EventProducer, edge_producer_config
from connectors.mqtt.bridge import MqttBridge
from connectors.mqtt.credential_sync import CredentialSync
from connectors.mqtt.credentials import ensure_bridge_user
from connectors.schema_registry import install_contracts
from schemas.errors import FleetError
from schemas.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event, *, sync_credentials: bool = True) -> None:
    """Bridge MQTT to Kafka until ``stop`` is set (then drain, PUBACK what Kafka took, leave)."""
    try:  # the bridge's own subscriptions, as its settings name them (idempotent)
        await asyncio.to_thread(ensure_bridge_user, settings.mqtt)
    except FleetError as exc:
        log.warning("could not update the bridge's broker user as admin: %s", exc)
    await asyncio.to_thread(install_contracts, settings)  # dead letters in their topic's format
    client_id = f"fleetstream-mqtt-{settings.mqtt.client_id}"
    producer = EventProducer(edge_producer_config(settings, client_id))
    await producer.start()
    # The partition count is asked of Kafka on first use: the bridge starts while it is away.
    batcher = EnvelopeBatcher(producer, settings.topics.raw, None, BatcherLimits.of(settings.kafka))
    sync = CredentialSync(settings) if sync_credentials else None
    if sync is not None:
        sync.start()
    bridge = MqttBridge(
        settings, batcher, producer, retry_max_s=settings.worker.retry_backoff_max_s
    )
    try:
        await bridge.run(stop)
    finally:
        log.info(
            "bridge stopping: %d messages acked, %d dead letters", bridge.acked, bridge.dead_letters
        )
        if sync is not None:
            await asyncio.to_thread(sync.stop)
        await producer.stop()

"""What the MQTT front does with a device's CONNECT and PUBLISH: who it is, and where its
readings go (no sockets here; ``connectors.mqtt.front.connection`` speaks the protocol).

Identity comes from the device registry the front follows (``fleet.devices.v1``, the HTTP
edge's cache): the username is the device id, the password its token, the client id the
device id again (or empty: the front assigns it). So a connection can never take a session or
client id of other credentials, and registering, disabling, rotating or deleting a device costs
the front one cached record and takes effect on every instance as the registry topic is read.
A device publishes only on its own topics (``FLEET_MQTT__TOPICS``, the ``+`` is its id).

Readings take the HTTP edge's path: the same decoder, event ids and envelope batcher, so a QoS 1
PUBACK is sent only after Kafka acked the reading with ``acks=all``. A payload that fails is a
dead letter (acked by Kafka before the PUBACK that says so).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure
from connectors.kafka.producer import Record
from connectors.mqtt.front.packets import Connect
from connectors.mqtt.messages import TopicMatcher, dead_letter_record, decode_message
from schemas.catalogue import GenericLimits
from schemas.devices import Device

# MQTT 5 reason codes the front answers with.
SUCCESS = 0x00
UNSPECIFIED = 0x80
BAD_CLIENT_ID = 0x85
BAD_CREDENTIALS = 0x86
NOT_AUTHORIZED = 0x87
UNAVAILABLE = 0x88
PAYLOAD_INVALID = 0x99

RESERVED_PREFIX = "fleetstream"
"""Client ids the system's own clients use; never a device's."""


class Registry(Protocol):
    """The device registry as the front reads it (``DeviceCache``)."""

    @property
    def caught_up(self) -> bool: ...
    def identify(self, token: str) -> Device | None: ...
    def get(self, record_id: str) -> Device | None: ...


class Batcher(Protocol):
    async def submit(self, items: Sequence[tuple[str, bytes]]) -> None: ...


Produce = Callable[[str, Sequence[Record]], Awaitable[None]]


@dataclass(frozen=True)
class Admitted:
    device: Device
    client_id: str
    """As the client gave it, or assigned (the device id) when it gave none."""


class KafkaTrouble(Exception):
    """Kafka did not take the reading: no PUBACK may say it did."""


@dataclass
class Ingest:
    registry: Registry
    matcher: TopicMatcher
    batcher: Batcher
    produce: Produce
    deadletter_topic: str
    max_items: int
    max_bytes: int
    limits: GenericLimits

    def admit(self, connect: Connect) -> Admitted | int:
        """The device a CONNECT authenticates, or the MQTT 5 reason to refuse it."""
        if not self.registry.caught_up:
            return UNAVAILABLE
        if not connect.username or connect.password is None:
            return BAD_CREDENTIALS
        device = self.registry.identify(connect.password.decode("utf-8", "replace"))
        if device is None or device.device_id != connect.username:
            return BAD_CREDENTIALS
        if not device.is_enabled:
            return NOT_AUTHORIZED
        client_id = connect.client_id or device.device_id
        if client_id != device.device_id or client_id.startswith(RESERVED_PREFIX):
            return BAD_CLIENT_ID
        return Admitted(device, client_id)

    def still_allowed(self, device: Device) -> bool:
        """The device is registered, enabled and holds the same token as when it connected."""
        current = self.registry.get(device.device_id)
        return (
            current is not None and current.is_enabled and current.token_hash == device.token_hash
        )

    async def publish(self, device: Device, topic: str, payload: bytes, now: datetime) -> int:
        """Take one PUBLISH; its MQTT 5 reason once Kafka acked what it became. Raises
        KafkaTrouble when Kafka did not take it."""
        if self.matcher.device_id(topic) != device.device_id:
            return NOT_AUTHORIZED
        try:
            decoded = decode_message(
                topic,
                payload,
                matcher=self.matcher,
                received_at=now,
                max_items=self.max_items,
                max_bytes=self.max_bytes,
                limits=self.limits,
            )
        except Exception as exc:  # noqa: BLE001 - a ValidationFailure, or a value nobody foresaw
            letter = dead_letter_record(topic, payload, exc, now, device.device_id)
            await self._kafka(self.produce(self.deadletter_topic, [letter]))
            return PAYLOAD_INVALID
        await self._kafka(self.batcher.submit(decoded.items))
        return SUCCESS

    async def _kafka(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except (KafkaUnavailable, ProducerBackpressure) as exc:
            raise KafkaTrouble(str(exc)) from exc

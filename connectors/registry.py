"""The device registry: Postgres is the record, ``fleet.devices.v1`` tells every process.

Every change is committed in Postgres first and then published (``acks=all``) before the caller
gets an answer. Publishing re-reads the committed row under the device's advisory lock
(:meth:`DeviceStore.publish_current`), so concurrent writers publish in commit order and the last
record on the topic is always the current row (or a tombstone once it is gone).

Delivery is at-least-once. When Postgres committed but the broker did not ack,
:class:`NotPublished` is raised (the API answers 503): the change is stored, and any later
publish of that device carries it. A retried request publishes again whatever its outcome
(a repeated create that finds the device, a repeated delete that finds nothing), and
``fleetstream devices resync`` (run by ``setup``) republishes every device that differs from the
topic and tombstones what the table no longer has. Repeats are harmless: consumers keep the
latest document per key.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.registry import RegistryRecord
from connectors.postgres.devices import (
    DeviceExists,
    DeviceNotFound,
    DevicePage,
    DeviceQuery,
    Publish,
    PublishAll,
)
from schemas.devices import (
    DEVICE_ID_PATTERN,
    Device,
    DeviceChanges,
    NewDevice,
    encode_device,
    hash_token,
    new_token,
)
from schemas.errors import FleetError

T = TypeVar("T")

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


class NotPublished(FleetError):
    """Stored in Postgres, not confirmed on the registry topic; retrying the request helps."""

    retriable = True


class DeviceRecords(Protocol):
    """The system of record; :class:`connectors.postgres.devices.DeviceStore` in production."""

    async def create(self, new: NewDevice, token_hash: str) -> Device: ...
    async def get(self, device_id: str) -> Device | None: ...
    async def list(self, query: DeviceQuery) -> DevicePage: ...
    async def update(self, device_id: str, changes: DeviceChanges) -> Device: ...
    async def set_token(self, device_id: str, token_hash: str) -> Device: ...
    async def delete(self, device_id: str) -> None: ...
    async def publish_current(self, device_id: str, publish: Publish) -> None: ...
    async def publish_all(self, publish: PublishAll) -> None: ...
    async def ping(self, timeout_s: float = 2.0) -> bool: ...


class Publisher(Protocol):
    topic: str

    def publish(self, records: Sequence[RegistryRecord]) -> None: ...


class Credentials(Protocol):
    """Where a device's plain token goes besides its hash (the MQTT broker's password store).

    Called after the change is committed and published: the plain token exists only now."""

    async def set_token(self, device: Device, token: str) -> None: ...


class CredentialsNotSet(NotPublished):
    """Stored and published, but the MQTT broker did not take the device's password."""


@dataclass(frozen=True)
class ResyncReport:
    published: int
    unchanged: int
    tombstoned: int


class DeviceRegistry:
    def __init__(
        self, store: DeviceRecords, publisher: Publisher, credentials: Credentials | None = None
    ) -> None:
        self.store = store
        self._publisher = publisher
        self._credentials = credentials

    async def get(self, device_id: str) -> Device | None:
        if not _DEVICE_ID.match(device_id):
            return None
        return await self.store.get(device_id)

    async def list(self, query: DeviceQuery) -> DevicePage:
        return await self.store.list(query)

    async def create(self, new: NewDevice, token: str | None = None) -> tuple[Device, str]:
        """Register ``new``; returns the device and its plain token (to show once)."""
        token = token or new_token()
        device = await self._then_publish(new.device_id, self.store.create(new, hash_token(token)))
        await self._set_credentials(device, token)
        return device, token

    async def update(self, device_id: str, changes: DeviceChanges) -> Device:
        return await self._then_publish(device_id, self.store.update(device_id, changes))

    async def rotate_token(self, device_id: str, token: str | None = None) -> tuple[Device, str]:
        token = token or new_token()
        device = await self._then_publish(
            device_id, self.store.set_token(device_id, hash_token(token))
        )
        await self._set_credentials(device, token)
        return device, token

    async def delete(self, device_id: str) -> None:
        await self._then_publish(device_id, self.store.delete(device_id))

    async def publish(self, device_id: str) -> None:
        """Publish the device's current row, or a tombstone when there is none."""
        await self.store.publish_current(device_id, self._publish_one)

    async def resync(self, on_topic: Mapping[str, Device]) -> ResyncReport:
        """Make the topic match the table, given what the topic holds now (``on_topic``)."""
        counts: dict[str, int] = {}

        async def publish_all(devices: Sequence[Device]) -> None:
            in_table = {device.device_id for device in devices}
            changed = [d for d in devices if on_topic.get(d.device_id) != d]
            gone = sorted(set(on_topic) - in_table)
            records = [(d.device_id, encode_device(d)) for d in changed]
            await self._send(records + [(device_id, None) for device_id in gone])
            counts.update(
                published=len(changed), unchanged=len(devices) - len(changed), tombstoned=len(gone)
            )

        await self.store.publish_all(publish_all)
        return ResyncReport(**counts)

    async def _then_publish(self, device_id: str, change: Awaitable[T]) -> T:
        if not _DEVICE_ID.match(device_id):
            # Cannot exist (and Postgres refuses e.g. U+0000): nothing to change or publish.
            if inspect.iscoroutine(change):
                change.close()
            raise DeviceNotFound(device_id)
        try:
            result = await change
        except (DeviceNotFound, DeviceExists):
            # A retry of a request whose publish failed lands here: publish what is stored.
            await self.publish(device_id)
            raise
        await self.publish(device_id)
        return result

    async def _set_credentials(self, device: Device, token: str) -> None:
        if self._credentials is None:
            return
        try:
            await self._credentials.set_token(device, token)
        except FleetError as exc:
            raise CredentialsNotSet(
                f"device {device.device_id} is stored, but the MQTT broker did not take its "
                f"token ({exc}); rotate the token to try again"
            ) from exc

    async def _publish_one(self, device_id: str, device: Device | None) -> None:
        await self._send([(device_id, None if device is None else encode_device(device))])

    async def _send(self, records: Sequence[RegistryRecord]) -> None:
        try:
            await asyncio.to_thread(self._publisher.publish, records)
        except KafkaUnavailable as exc:
            raise NotPublished(
                f"the change is stored in Postgres but {self._publisher.topic} did not confirm "
                f"it ({exc}); retry the request, or run `fleetstream devices resync`"
            ) from exc

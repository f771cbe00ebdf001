"""An in-memory copy of the device registry that follows ``fleet.devices.v1``.

Every API process keeps one, so authenticating a request is a dict look-up, not a database round
trip, and a change published by any instance (or the CLI) reaches every instance within
milliseconds of the broker's ack.

It follows the topic with :class:`connectors.kafka.compacted.DocumentCache` (every partition
from the beginning, no consumer group), as the flow cache does. Until the cache has caught up a
missing device may just not have been read yet, so callers must answer "try again" (503), never
"unknown device" (401). Partitions added to the topic later are not followed (adding partitions
to a registry topic is not an online operation here).
"""

from __future__ import annotations

import time

from connectors.kafka.compacted import DocumentCache, DocumentIndex
from schemas.devices import Device, decode_device, hash_token, token_matches

DELETIONS_KEPT = 100_000
"""Most deletions remembered (:meth:`DeviceIndex.deleted`); the oldest half goes past it."""


class DeviceIndex(DocumentIndex[Device]):
    """Devices by id and by token hash (:class:`DocumentIndex`), and the deletions read."""

    def __init__(self) -> None:
        super().__init__(decode_device, _device_id)
        self._owners: dict[str, str] = {}
        self._deleted: dict[str, float] = {}
        """Device id → ``time.monotonic()`` when its tombstone was read, until it is registered
        again: the worker drops the live state of deleted devices (``agents.status``)."""

    def deleted(self, within_s: float) -> list[str]:
        """The devices whose tombstone was read in the last ``within_s`` seconds (a worker that
        starts reads those still on the compacted topic) and that were not registered again."""
        horizon = time.monotonic() - within_s
        return [device_id for device_id, at in list(self._deleted.items()) if at >= horizon]

    def identify(self, token: str) -> Device | None:
        """The device whose token this is (enabled or not), or None."""
        owner = self._owners.get(hash_token(token))
        device = None if owner is None else self.get(owner)
        if device is None or not token_matches(token, device.token_hash):
            return None
        return device

    def _stored(self, document: Device, previous: Device | None) -> None:
        self._deleted.pop(document.device_id, None)
        self._owners[document.token_hash] = document.device_id
        if previous is not None and previous.token_hash != document.token_hash:
            self._drop_owner(previous)

    def _removed(self, record_id: str, previous: Device | None) -> None:
        if previous is not None:
            self._drop_owner(previous)
        deleted = self._deleted
        deleted.pop(record_id, None)  # re-inserted: the dict stays in reading order
        deleted[record_id] = time.monotonic()
        if len(deleted) > DELETIONS_KEPT:
            for oldest in list(deleted)[: DELETIONS_KEPT // 2]:
                del deleted[oldest]

    def _drop_owner(self, device: Device) -> None:
        if self._owners.get(device.token_hash) == device.device_id:
            self._owners.pop(device.token_hash, None)


def _device_id(device: Device) -> str:
    return device.device_id


class DeviceCache(DocumentCache[Device]):
    """The registry cache of one API process (or worker): ``start()`` once, ``stop()`` once."""

    name = "device cache"
    noun = "devices"

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._devices = DeviceIndex()
        super().__init__(bootstrap_servers, topic, self._devices)

    def deleted(self, within_s: float) -> list[str]:
        """See :meth:`DeviceIndex.deleted`."""
        return self._devices.deleted(within_s)

    def identify(self, token: str) -> Device | None:
        return self._devices.identify(token)

"""An in-memory copy of the device registry that follows ``fleet.devices.v1``.

Every API process keeps one, so authenticating a request is a dict look-up, not a database round
trip, and a change published by any instance (or the CLI) reaches every instance within
milliseconds of the broker's ack.

It follows the topic with :class:`connectors.kafka.compacted.TopicFollower` (every partition
from the beginning, no consumer group). Until the cache has caught up a missing device may just
not have been read yet, so callers must answer "try again" (503), never "unknown device" (401).
Partitions added to the topic later are not followed (adding partitions to a registry topic is
not an online operation here).
"""

from __future__ import annotations

import logging
import time

import msgspec

from connectors.kafka.compacted import TopicFollower, read_to_end
from schemas.devices import Device, decode_device, hash_token, token_matches

log = logging.getLogger(__name__)

DELETIONS_KEPT = 100_000
"""Most deletions remembered (:meth:`DeviceIndex.deleted`); the oldest half goes past it."""


class DeviceIndex:
    """Devices by id and by token hash. Applied from one thread, read from others: each step
    is a single dict operation, atomic under the GIL."""

    def __init__(self) -> None:
        self._devices: dict[str, Device] = {}
        self._owners: dict[str, str] = {}
        self._deleted: dict[str, float] = {}
        """Device id → ``time.monotonic()`` when its tombstone was read, until it is registered
        again: the worker drops the live state of deleted devices (``agents.status``)."""

    def __len__(self) -> int:
        return len(self._devices)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one registry record: a document replaces the device, a tombstone removes it.

        A record that cannot be decoded is logged and skipped: it must not stop the cache.
        """
        if key is None:
            log.error("registry record without a key skipped")
            return
        device_id = key.decode(errors="replace")
        if value is None:
            self._forget(device_id)
            self._note_deleted(device_id)
            return
        try:
            device = decode_device(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("registry record for %s skipped: %s", device_id, exc)
            return
        if device.device_id != device_id:
            log.error("registry record keyed %s is about %s; skipped", device_id, device.device_id)
            return
        previous = self._devices.get(device_id)
        self._devices[device_id] = device
        self._deleted.pop(device_id, None)
        self._owners[device.token_hash] = device_id
        if previous is not None and previous.token_hash != device.token_hash:
            self._drop_owner(previous)

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def deleted(self, within_s: float) -> list[str]:
        """The devices whose tombstone was read in the last ``within_s`` seconds (a worker that
        starts reads those still on the compacted topic) and that were not registered again."""
        horizon = time.monotonic() - within_s
        return [device_id for device_id, at in list(self._deleted.items()) if at >= horizon]

    def _note_deleted(self, device_id: str) -> None:
        deleted = self._deleted
        deleted.pop(device_id, None)  # re-inserted: the dict stays in reading order
        deleted[device_id] = time.monotonic()
        if len(deleted) > DELETIONS_KEPT:
            for oldest in list(deleted)[: DELETIONS_KEPT // 2]:
                del deleted[oldest]

    def documents(self) -> dict[str, Device]:
        """A copy of every device, by id."""
        return dict(self._devices)

    def identify(self, token: str) -> Device | None:
        """The device whose token this is (enabled or not), or None."""
        owner = self._owners.get(hash_token(token))
        device = None if owner is None else self._devices.get(owner)
        if device is None or not token_matches(token, device.token_hash):
            return None
        return device

    def _forget(self, device_id: str) -> None:
        previous = self._devices.pop(device_id, None)
        if previous is not None:
            self._drop_owner(previous)

    def _drop_owner(self, device: Device) -> None:
        if self._owners.get(device.token_hash) == device.device_id:
            self._owners.pop(device.token_hash, None)


def read_registry(bootstrap_servers: str, topic: str, timeout_s: float = 30.0) -> DeviceIndex:
    """The registry as the topic holds it now (used by ``devices resync``)."""
    index = DeviceIndex()
    read_to_end(bootstrap_servers, topic, index, timeout_s)
    return index


class DeviceCache(TopicFollower):
    """The registry cache of one API process (or worker): ``start()`` once, ``stop()`` once."""

    name = "device cache"

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._index = DeviceIndex()
        super().__init__(bootstrap_servers, topic, self._index)

    def get(self, device_id: str) -> Device | None:
        return self._index.get(device_id)

    def deleted(self, within_s: float) -> list[str]:
        """See :meth:`DeviceIndex.deleted`."""
        return self._index.deleted(within_s)

    def documents(self) -> dict[str, Device]:
        """A copy of every device read so far, by id (the operator views list them)."""
        return self._index.documents()

    def identify(self, token: str) -> Device | None:
        return self._index.identify(token)

    def caught_up_message(self) -> str:
        return f"device cache caught up with {self.topic}: {len(self._index)} devices"

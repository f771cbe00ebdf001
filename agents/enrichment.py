"""Enrichment: what the device registry says about a reading's device.

Every worker follows the compacted ``fleet.devices.v1`` from the beginning with the same
:class:`~connectors.kafka.device_cache.DeviceCache` the API authenticates with (assigned
partitions, no consumer group, tombstones delete), so each worker holds the whole registry and
a look-up is a dict access. That is the "changelogged equivalent" of a Faust GlobalTable: we
chose it over ``app.GlobalTable`` because Faust's global tables on a topic written by another
program are known to miss updates across several workers (faust-streaming issue #283), and the
cache's "caught up" mark (read to the high watermarks seen at start) is what the validate agent
waits for before its first batch, so no reading is curated against a half-read registry.

Policies (``FLEET_STREAM__UNKNOWN_DEVICES`` / ``__DISABLED_DEVICES``): a reading of a device the
registry does not know, or of a disabled one, passes unenriched or becomes a dead letter.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

from schemas.devices import Device
from schemas.errors import ValidationFailure
from schemas.events import Enrichment

log = logging.getLogger(__name__)

Policy = Literal["pass", "deadletter"]


class DeviceSource(Protocol):
    """What enrichment needs of the registry (``DeviceCache``)."""

    def get(self, device_id: str) -> Device | None: ...


class Enricher:
    """Device documents → :class:`Enrichment`, built once per document version."""

    def __init__(self, devices: DeviceSource, *, unknown: Policy, disabled: Policy) -> None:
        self._devices = devices
        self._unknown = unknown
        self._disabled = disabled
        self._built: dict[str, tuple[Device, Enrichment]] = {}

    def enrichment(self, device_id: str) -> Enrichment | None:
        """The device's enrichment; ``None`` to pass it unenriched. Raises ValidationFailure
        when the policy sends the reading to the dead-letter topic."""
        device = self._devices.get(device_id)
        if device is None:
            self._built.pop(device_id, None)
            if self._unknown == "deadletter":
                raise _refused(f"device {device_id} is not registered", "unknown_device")
            return None
        if not device.is_enabled and self._disabled == "deadletter":
            raise _refused(f"device {device_id} is disabled", "disabled_device")
        cached = self._built.get(device_id)
        if cached is not None and cached[0] is device:
            return cached[1]
        built = enrichment_of(device)
        self._built[device_id] = (device, built)
        return built


def enrichment_of(device: Device) -> Enrichment:
    return Enrichment(
        device_name=device.name,
        profile=device.profile,
        location=device.metadata.get("location"),
        tags=list(device.tags),
    )


def _refused(message: str, kind: str) -> ValidationFailure:
    return ValidationFailure.single(("device_id",), message, kind)

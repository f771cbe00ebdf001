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
from collections.abc import Callable
from typing import Generic, Literal, Protocol, TypeVar

from schemas.devices import Device
from schemas.errors import ValidationFailure
from schemas.events import Enrichment

log = logging.getLogger(__name__)

Policy = Literal["pass", "deadletter"]
T = TypeVar("T")
_DERIVED_KEPT = 200_000  # a bound, not an LRU: fleets are smaller than this


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


class Derived(Generic[T]):
    """``make(enrichment)`` of a device, kept per device document: called with a device_id
    it gives what ``make`` made of the device's enrichment, made again only when the registry
    holds another document for the device; a refused device raises as
    :meth:`Enricher.enrichment` does. One registry look-up per call when kept (the compiled
    core calls it once per device per batch)."""

    def __init__(self, enricher: Enricher, make: Callable[[str, Enrichment | None], T]) -> None:
        self._enricher = enricher
        self._get = enricher._devices.get
        self._make = make
        self._kept: dict[str, tuple[Device | None, T]] = {}

    def __call__(self, device_id: str) -> T:
        device = self._get(device_id)
        kept = self._kept.get(device_id)
        if kept is not None and kept[0] is device:
            return kept[1]  # the same document: the policies let it through last time
        made = self._make(device_id, self._enricher.enrichment(device_id))
        if len(self._kept) >= _DERIVED_KEPT:
            self._kept.clear()
        self._kept[device_id] = (device, made)
        return made


def enrichment_of(device: Device) -> Enrichment:
    return Enrichment(
        device_name=device.name,
        profile=device.profile,
        location=device.metadata.get("location"),
        tags=list(device.tags),
    )


def _refused(message: str, kind: str) -> ValidationFailure:
    return ValidationFailure.single(("device_id",), message, kind)

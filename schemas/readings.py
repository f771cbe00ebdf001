"""The device reading contract (what clients POST / publish over MQTT).

Canonical payload (seed 002, ESP32 boards)::

    {"device_id": "esp32-lab-01", "timestamp": "2025-01-01T12:00:00Z",
     "sensors": {"ld2410": {"presence": true, "distance_cm": 150},
                 "pir": {"motion_detected": true},
                 "mq134": {"gas_concentration": 12.5}}}

Industrial machines (seed 001) report under ``sensors.equipment``. The sensor types and their
rules are the catalogue's (``schemas.catalogue``); ``Sensors`` is built from it.

All structs are frozen, reject unknown fields (a typo must not silently drop
data) and omit ``None``/default fields when encoded.  Every numeric bound is
finite, so ``inf``/``NaN`` can never pass (JSON has no NaN literal, but
``1e999`` and already-decoded Python floats could otherwise sneak through).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta

from schemas.catalogue import CATALOGUE, Contract, Equipment, Ld2410, Mq134, Pir

__all__ = [
    "DEVICE_ID_PATTERN",
    "UUID_PATTERN",
    "AwareDatetime",
    "DeviceId",
    "Equipment",
    "EventId",
    "Ld2410",
    "Metadata",
    "MetadataValue",
    "Mq134",
    "Pir",
    "Reading",
    "Sensors",
]

# Python's ``$`` also matches before a trailing "\n"; ``\Z`` does not.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"

_FMAX = sys.float_info.max  # upper bound that only rejects inf/NaN

DeviceId = Annotated[str, Meta(pattern=DEVICE_ID_PATTERN)]
"""1-128 chars, starts alphanumeric, then ``[A-Za-z0-9._:-]`` (fits Kafka keys, MQTT topics)."""

EventId = Annotated[str, Meta(pattern=UUID_PATTERN)]
"""Hyphenated UUID string; structs normalise it to lower case."""

AwareDatetime = Annotated[datetime, Meta(tz=True)]

MetadataValue = (
    Annotated[str, Meta(max_length=256)]
    | Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # int64: every sink can store it
    | Annotated[float, Meta(ge=-_FMAX, le=_FMAX)]
    | bool
)
Metadata = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=64)], MetadataValue],
    Meta(max_length=32),
]
"""Small free-form tags: <= 32 entries, keys 1-64 chars, strings <= 256 chars."""

_Contract = Contract


def _at_least_one_sensor(self: msgspec.Struct) -> None:
    values = msgspec.structs.astuple(self)  # tuple.count runs in C: this is per reading
    if values.count(None) == len(values):
        raise ValueError("at least one sensor is required")


def _build_sensors() -> type[msgspec.Struct]:
    """``Sensors``: one optional field per catalogue entry, unknown types refused."""
    return msgspec.defstruct(
        "Sensors",
        [(sensor.name, sensor.schema | None, None) for sensor in CATALOGUE],
        bases=(Contract,),
        module=__name__,
        frozen=True,
        forbid_unknown_fields=True,
        omit_defaults=True,
        namespace={
            "__post_init__": _at_least_one_sensor,
            "__doc__": "Readings keyed by sensor type (schemas.catalogue); at least one is "
            "required; unknown sensor types are rejected (unknown_field at sensors.<key>).",
        },
    )


if TYPE_CHECKING:
    Sensors = Any
    """Built from the catalogue at import time; type checkers see attributes as Any."""
else:
    Sensors = _build_sensors()


class Reading(_Contract, frozen=True):
    """One device reading.

    ``timestamp`` must carry a timezone (``Z`` or ``±HH:MM``); ``None`` means
    "use the receive time".  How far in the future it may be is checked by the
    validator (it needs a reference clock).  ``event_id`` is an optional
    client-chosen UUID used for idempotency; it is normalised to lower case.
    """

    device_id: DeviceId
    sensors: Sensors
    timestamp: AwareDatetime | None = None
    event_id: EventId | None = None
    metadata: Metadata | None = None

    def __post_init__(self) -> None:
        if self.event_id is not None and (lowered := self.event_id.lower()) != self.event_id:
            # The same UUID in another case must dedupe to the same event.
            msgspec.structs.force_setattr(self, "event_id", lowered)

"""The device reading contract (what clients POST / publish over MQTT).

Canonical payload (seed 002, ESP32 boards)::

    {"device_id": "esp32-lab-01", "timestamp": "2025-01-01T12:00:00Z",
     "sensors": {"ld2410": {"presence": true, "distance_cm": 150},
                 "pir": {"motion_detected": true},
                 "mq134": {"gas_concentration": 12.5}}}

Industrial machines (seed 001) report under ``sensors.equipment``.

All structs are frozen, reject unknown fields (a typo must not silently drop
data) and omit ``None``/default fields when encoded.  Every numeric bound is
finite, so ``inf``/``NaN`` can never pass (JSON has no NaN literal, but
``1e999`` and already-decoded Python floats could otherwise sneak through).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

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

CentiMeters = Annotated[int, Meta(ge=0, le=800)]  # LD2410 max range is 8 m
Percent = Annotated[int, Meta(ge=0, le=100)]


class _Contract(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Shared struct options for the reading contract.

    Subclasses repeat ``frozen=True`` only for type checkers (msgspec inherits it).
    """


class Ld2410(_Contract, frozen=True):
    """HLK-LD2410 24 GHz mmWave presence radar.

    Units: ``*_distance_cm`` in centimetres (0-800, the radar's 8 m range);
    ``*_energy`` is the radar's unitless signal strength, 0-100.
    """

    presence: bool
    moving_target: bool | None = None
    stationary_target: bool | None = None
    distance_cm: CentiMeters | None = None
    moving_energy: Percent | None = None
    stationary_energy: Percent | None = None
    detection_distance_cm: CentiMeters | None = None


class Pir(_Contract, frozen=True):
    """Passive infrared motion sensor (digital output)."""

    motion_detected: bool


class Mq134(_Contract, frozen=True):
    """MQ-series gas sensor read through the ESP32 ADC.

    ``gas_concentration`` in ppm (0-10000, the sensor's datasheet span);
    ``raw_value`` is the 12-bit ADC count (0-4095).  ``unit`` is always
    ``"ppm"``; being a default it is omitted when encoded.
    """

    gas_concentration: Annotated[float, Meta(ge=0.0, le=10_000.0)]
    raw_value: Annotated[int, Meta(ge=0, le=4095)] | None = None
    unit: Literal["ppm"] = "ppm"


class Equipment(_Contract, frozen=True):
    """Industrial machine telemetry (seed 001).  At least one field is required.

    Units: ``temperature`` °C (-50..200), ``vibration`` mm/s RMS (0..1000),
    ``pressure`` bar (0..1000), ``humidity`` % relative (0..100), ``rpm``
    revolutions per minute (0..100000), ``power_kw`` kilowatts (>= 0, finite).
    """

    temperature: Annotated[float, Meta(ge=-50.0, le=200.0)] | None = None
    vibration: Annotated[float, Meta(ge=0.0, le=1000.0)] | None = None
    pressure: Annotated[float, Meta(ge=0.0, le=1000.0)] | None = None
    humidity: Annotated[float, Meta(ge=0.0, le=100.0)] | None = None
    rpm: Annotated[float, Meta(ge=0.0, le=100_000.0)] | None = None
    power_kw: Annotated[float, Meta(ge=0.0, le=_FMAX)] | None = None

    def __post_init__(self) -> None:
        # msgspec reports ValueErrors raised here with the field path.
        if all(getattr(self, name) is None for name in self.__struct_fields__):
            raise ValueError("at least one equipment measurement is required")


class Sensors(_Contract, frozen=True):
    """Readings keyed by sensor type.  At least one sensor is required;
    unknown sensor types are rejected (``unknown_field`` at ``sensors.<key>``).
    """

    ld2410: Ld2410 | None = None
    pir: Pir | None = None
    mq134: Mq134 | None = None
    equipment: Equipment | None = None

    def __post_init__(self) -> None:
        if (
            self.ld2410 is None
            and self.pir is None
            and self.mq134 is None
            and self.equipment is None
        ):
            raise ValueError("at least one sensor is required")


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

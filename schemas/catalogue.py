"""The sensor catalogue: one declarative definition per sensor type.

Adding a sensor type is one struct and one :class:`SensorType` entry in :data:`CATALOGUE`; the
reading contract (``schemas.readings.Sensors``), the validator, the curated topic, the status
table's last values and the rollups all follow from it, with no edit in ``agents/``. The
``sensors`` part of the readings Avro schema and its writer are derived from it too
(``schemas.avro_sensors``): run ``fleetstream schemas generate`` and commit
``schemas/avro/readings.avsc`` (a new ``history/`` version when it changed).

Every struct is frozen, rejects unknown fields (a typo must not silently drop data) and omits
``None``/default fields when encoded. Every numeric bound is finite, so ``inf``/``NaN`` never
pass (JSON has no NaN literal, but ``1e999`` and already-decoded Python floats could).

``generic`` is the catalogue's escape hatch: a flat map of named numbers and booleans, for
sensors nobody has described yet. A sensor type missing from the catalogue is refused, unless
``FLEET_STREAM__UNKNOWN_SENSOR_TYPES=generic`` tells the worker to accept it with the generic
rules (:func:`decode_generic`). What the generic rules take of one reading is bounded further by
:class:`GenericLimits` (``FLEET_GENERIC__*``): a device names its own fields, and every name it
invents becomes a last value in its status row and an aggregate in its rollup row.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "CATALOGUE",
    "GENERIC_FIELDS_PER_READING",
    "GENERIC_FIELDS_PER_SENSOR",
    "GENERIC_NAME_LENGTH",
    "SENSOR_NAME_MAX",
    "SENSOR_NAME_PATTERN",
    "Contract",
    "Equipment",
    "GenericLimits",
    "GenericValues",
    "Ld2410",
    "Mq134",
    "Pir",
    "SensorType",
    "decode_generic",
    "measurements",
    "sensor_types",
]

FMAX: Final = sys.float_info.max  # upper bound that only rejects inf/NaN

CentiMeters = Annotated[int, Meta(ge=0, le=800)]  # LD2410 max range is 8 m
Percent = Annotated[int, Meta(ge=0, le=100)]

SENSOR_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}\Z"
"""Sensor type and generic field names: lower case, digits and ``_``, 1-32 characters."""
SENSOR_NAME_MAX: Final = 32
"""The longest name :data:`SENSOR_NAME_PATTERN` allows."""
SensorName = Annotated[str, Meta(pattern=SENSOR_NAME_PATTERN)]


class Contract(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Shared struct options for the reading contract.

    Subclasses repeat ``frozen=True`` only for type checkers (msgspec inherits it).
    """


class Ld2410(Contract, frozen=True):
    """HLK-LD2410 24 GHz mmWave presence radar (seed 002).

    Units: ``*_distance_cm`` in centimetres (0-800, the radar's 8 m range);
    ``*_energy`` is the radar's unitless signal strength, 0-100.
    """

    presence: Annotated[bool, Meta(description="Someone is present.")]
    moving_target: Annotated[bool, Meta(description="A moving target is detected.")] | None = None
    stationary_target: (
        Annotated[bool, Meta(description="A stationary target is detected.")] | None
    ) = None
    distance_cm: (
        Annotated[CentiMeters, Meta(description="Distance to the target, centimetres, 0-800.")]
        | None
    ) = None
    moving_energy: (
        Annotated[Percent, Meta(description="Moving target signal strength, unitless 0-100.")]
        | None
    ) = None
    stationary_energy: (
        Annotated[Percent, Meta(description="Stationary target signal strength, unitless 0-100.")]
        | None
    ) = None
    detection_distance_cm: (
        Annotated[
            CentiMeters, Meta(description="Configured detection distance, centimetres, 0-800.")
        ]
        | None
    ) = None


class Pir(Contract, frozen=True):
    """Passive infrared motion sensor, digital output (seed 002)."""

    motion_detected: Annotated[bool, Meta(description="Motion was detected.")]


class Mq134(Contract, frozen=True):
    """MQ-series gas sensor read through the ESP32 ADC (seed 002).

    ``gas_concentration`` in ppm (0-10000, the sensor's datasheet span);
    ``raw_value`` is the 12-bit ADC count (0-4095).  ``unit`` is always
    ``"ppm"``; being a default it is omitted when encoded.
    """

    gas_concentration: Annotated[
        float, Meta(ge=0.0, le=10_000.0, description="Gas concentration, ppm, 0-10000.")
    ]
    raw_value: (
        Annotated[int, Meta(ge=0, le=4095, description="12-bit ADC count, 0-4095.")] | None
    ) = None
    unit: Literal["ppm"] = "ppm"


class Equipment(Contract, frozen=True):
    """Industrial machine telemetry (seed 001).  At least one field is required.

    Units: ``temperature`` °C (-50..200, seed 001's MIN/MAX_TEMPERATURE), ``vibration`` mm/s
    RMS (0..1000), ``pressure`` bar (0..1000), ``humidity`` % relative (0..100), ``rpm``
    revolutions per minute (0..100000), ``power_kw`` kilowatts (>= 0, finite).
    """

    temperature: (
        Annotated[float, Meta(ge=-50.0, le=200.0, description="Degrees Celsius, -50..200.")] | None
    ) = None
    vibration: (
        Annotated[float, Meta(ge=0.0, le=1000.0, description="mm/s RMS, 0..1000.")] | None
    ) = None
    pressure: Annotated[float, Meta(ge=0.0, le=1000.0, description="bar, 0..1000.")] | None = None
    humidity: (
        Annotated[float, Meta(ge=0.0, le=100.0, description="% relative humidity, 0..100.")] | None
    ) = None
    rpm: (
        Annotated[
            float, Meta(ge=0.0, le=100_000.0, description="Revolutions per minute, 0..100000.")
        ]
        | None
    ) = None
    power_kw: (
        Annotated[float, Meta(ge=0.0, le=FMAX, description="Kilowatts, >= 0, finite.")] | None
    ) = None

    def __post_init__(self) -> None:
        # msgspec reports ValueErrors raised here with the field path.
        values = msgspec.structs.astuple(self)  # tuple.count runs in C: this is per reading
        if values.count(None) == len(values):
            raise ValueError("at least one equipment measurement is required")


GENERIC_FIELDS_PER_SENSOR: Final = 32
"""Fields of one sensor read by the generic rules: the contract's most, and the default bound."""
GENERIC_FIELDS_PER_READING: Final = 48
"""Default bound of the fields one reading carries under the generic rules, over all its sensors
read by them (the ``generic`` sensor, and unknown sensor types when the worker reads them)."""
GENERIC_NAME_LENGTH: Final = SENSOR_NAME_MAX
"""Default bound of a generic field name's length: the contract's most."""

GenericValues = Annotated[
    dict[SensorName, Annotated[float, Meta(ge=-FMAX, le=FMAX)] | bool],
    Meta(min_length=1, max_length=GENERIC_FIELDS_PER_SENSOR),
]
"""A generic sensor: 1-32 named finite numbers or booleans, e.g. ``{"co2_ppm": 415}``. Values are
scalars: a nested object or array is refused as a type error naming its field, so nothing under
a generic sensor is ever more than one level deep."""


@dataclass(frozen=True, slots=True)
class GenericLimits:
    """How much of one reading the generic rules take (``FLEET_GENERIC__*``), checked by the
    validator the edges and the worker share (``schemas.validation.check_generic_limits``).

    These can only tighten the contract (:data:`GenericValues`: at most 32 fields per sensor,
    names of at most 32 characters); ``fields_per_reading`` bounds the sum over every sensor the
    generic rules read, which the contract alone leaves open when the worker accepts unknown
    sensor types. There is no depth to bound: generic values are numbers and booleans.
    """

    fields_per_sensor: int = GENERIC_FIELDS_PER_SENSOR
    fields_per_reading: int = GENERIC_FIELDS_PER_READING
    name_length: int = GENERIC_NAME_LENGTH


@dataclass(frozen=True)
class SensorType:
    """One entry of the catalogue: the key under ``sensors``, its schema, what it measures."""

    name: str
    schema: Any
    """A :class:`Contract` struct, or another msgspec-decodable type (``GenericValues``)."""
    summary: str
    source: str
    """Where the type comes from (a seed document, or ``fleetstream`` for our own)."""
    doc: str
    """What the type is, for analytics: the doc of its record (or map) in the readings Avro
    schema. Field docs are each field's ``Meta(description=...)``: unit and range."""


CATALOGUE: Final[tuple[SensorType, ...]] = (
    SensorType(
        "ld2410", Ld2410, "mmWave presence radar: presence, distance, energy", "seed 002",
        "HLK-LD2410 24 GHz mmWave presence radar.",
    ),
    SensorType(
        "pir", Pir, "passive infrared motion sensor", "seed 002",
        "Passive infrared motion sensor.",
    ),
    SensorType(
        "mq134", Mq134, "gas concentration (ppm) and raw ADC value", "seed 002",
        "MQ-series gas sensor read through the ESP32 ADC.",
    ),
    SensorType(
        "equipment", Equipment, "industrial machine telemetry", "seed 001",
        "Industrial machine telemetry; at least one field is present.",
    ),
    SensorType(
        "generic", GenericValues, "any named numbers or booleans", "fleetstream",
        "The catalogue's generic sensor: 1-32 named finite numbers or booleans.",
    ),
)  # fmt: skip


def sensor_types() -> list[str]:
    """The catalogue's sensor type names, in catalogue order."""
    return [sensor.name for sensor in CATALOGUE]


_generic_decoder = msgspec.json.Decoder(GenericValues)


def decode_generic(data: bytes) -> dict[str, float | bool]:
    """A sensor's JSON object read with the generic rules; raises msgspec's errors."""
    return _generic_decoder.decode(data)


def measurements(sensors: Mapping[str, Any]) -> Iterator[tuple[str, float | bool | str]]:
    """``("ld2410.distance_cm", 150)``, ... for every scalar of a decoded ``sensors`` object.

    Works on any sensor type (catalogue or generic): nested objects are flattened with ``.``.
    """
    for sensor, values in sensors.items():
        if not isinstance(values, Mapping):
            continue
        for field, value in values.items():
            if isinstance(value, bool | int | float | str):
                yield f"{sensor}.{field}", value

"""The payloads of the seed services, and their translation into canonical readings.

Devices in the field keep sending what the seed services accepted; each seed route reads its own
payload here, checks the seed's own rules, and turns it into the canonical reading JSON
(:class:`schemas.readings.Reading`), which then passes the same validator as ``/v1/readings``.
This module is the one place that knows the seeds' shapes:

* **seed 001** (equipment telemetry): ``{"equipment_id": "RADAR-LOC-001", "temperature"?: 85.5,
  "vibration"?: 0.45, "pressure"?: 3.2, "humidity"?: 65.0, "voltage"?: 220.0, "timestamp"?: ...}``;
  batches are ``{"readings": [...]}`` of 1-100. Its rules: ``equipment_id`` is
  ``TYPE-LOCATION-NNN`` (compared upper-cased, stored upper-cased), ``temperature`` -50..200 °C,
  ``timestamp`` without a zone is UTC. The seed's text requires no measurement (it gives
  ``temperature`` a range, not a duty), so every measurement is optional and a reading needs one
  of them, the canonical ``equipment`` rule (docs/compat.md, seed 001). The reading goes under
  ``sensors.equipment``; ``voltage`` (which the equipment sensor has no field for yet) is kept in
  ``metadata.voltage``.
* **seed 002** (ESP32): the canonical reading itself (``sensors.ld2410/pir/mq134``).
* **seed 000** (LoRaWAN via ChirpStack's HTTP integration): an uplink event; ``deviceInfo.devEui``
  (upper-cased) is the device id, ``deduplicationId`` the event id (so ChirpStack's retries
  dedupe), ``time`` the timestamp, the decoded ``object`` the sensors, and ``fCnt``, ``fPort``,
  ``dr``, ``devAddr`` and ``deviceInfo.deviceName`` go to ``metadata``.

Errors found by the canonical validator are reported under the seed's own field names
(``sensors.equipment.temperature`` → ``temperature``), so a seed client reads its own fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from schemas.errors import FieldError, Loc, ValidationFailure
from schemas.readings import UUID_PATTERN

__all__ = [
    "EQUIPMENT_ID_PATTERN",
    "SEED001_MAX_BATCH",
    "ChirpstackUplink",
    "EquipmentBatch",
    "EquipmentReading",
    "chirpstack_reading",
    "equipment_device_id",
    "equipment_reading",
    "relocate",
    "seed000_loc",
    "seed001_loc",
]

EQUIPMENT_ID_PATTERN = r"^[A-Za-z]+-[A-Za-z0-9]+-[0-9]{3}\Z"
"""Seed 001's ``TYPE-LOCATION-NNN``; the seed upper-cases before matching, so we match both."""
SEED001_MAX_BATCH = 100
TEMPERATURE_MIN_C = -50.0
TEMPERATURE_MAX_C = 200.0

_FMAX = 1.7976931348623157e308
NonNegative = Annotated[float, Meta(ge=0.0, le=_FMAX)]


class EquipmentReading(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Seed 001's ``SensorReading``."""

    equipment_id: Annotated[str, Meta(min_length=3, max_length=50, pattern=EQUIPMENT_ID_PATTERN)]
    temperature: Annotated[float, Meta(ge=TEMPERATURE_MIN_C, le=TEMPERATURE_MAX_C)] | None = None
    vibration: NonNegative | None = None
    pressure: NonNegative | None = None
    humidity: Annotated[float, Meta(ge=0.0, le=100.0)] | None = None
    voltage: Annotated[float, Meta(ge=0.0, le=500.0)] | None = None
    timestamp: datetime | None = None


class EquipmentBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Seed 001's ``SensorReadingBatch``: 1-100 readings."""

    readings: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=SEED001_MAX_BATCH)]


class ChirpstackDeviceInfo(msgspec.Struct, frozen=True):
    """Field names are ChirpStack's (camelCase)."""

    devEui: Annotated[str, Meta(pattern=r"^[0-9A-Fa-f]{16}\Z")]
    deviceName: Annotated[str, Meta(max_length=256)] | None = None


class ChirpstackUplink(msgspec.Struct, frozen=True):
    """The fields we use of a ChirpStack v4 ``up``/``join`` event; the many others (rxInfo,
    txInfo, adr, data...) are ignored."""

    deviceInfo: ChirpstackDeviceInfo
    deduplicationId: Annotated[str, Meta(pattern=UUID_PATTERN)] | None = None
    time: datetime | None = None
    object: dict[str, Any] | None = None
    fCnt: Annotated[int, Meta(ge=0, le=2**32)] | None = None
    fPort: Annotated[int, Meta(ge=0, le=255)] | None = None
    dr: Annotated[int, Meta(ge=0, le=15)] | None = None
    devAddr: Annotated[str, Meta(max_length=16)] | None = None
    data: str | None = None

    @property
    def is_join(self) -> bool:
        """ChirpStack's join events carry no frame counter and no data (as seed 000 read it)."""
        return self.fCnt is None and self.data is None


_json = msgspec.json.Encoder()


def _utc(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).isoformat()


_EQUIPMENT_ID = re.compile(EQUIPMENT_ID_PATTERN)


def equipment_device_id(equipment_id: str) -> str:
    """The device id seed 001's routes store an equipment id under: upper-cased, as the seed
    matched it. Any other id is left as it is (canonical device ids are case-sensitive)."""
    return equipment_id.upper() if _EQUIPMENT_ID.match(equipment_id) else equipment_id


def equipment_reading(payload: EquipmentReading) -> bytes:
    """The canonical reading JSON of a seed 001 payload."""
    measured = {
        "temperature": payload.temperature,
        "vibration": payload.vibration,
        "pressure": payload.pressure,
        "humidity": payload.humidity,
    }
    reading: dict[str, Any] = {
        "device_id": equipment_device_id(payload.equipment_id),
        "sensors": {"equipment": {k: v for k, v in measured.items() if v is not None}},
    }
    if (timestamp := _utc(payload.timestamp)) is not None:
        reading["timestamp"] = timestamp
    if payload.voltage is not None:
        reading["metadata"] = {"voltage": payload.voltage}
    return _json.encode(reading)


def chirpstack_reading(uplink: ChirpstackUplink) -> bytes:
    """The canonical reading JSON of a ChirpStack uplink (seed 000)."""
    reading: dict[str, Any] = {
        "device_id": uplink.deviceInfo.devEui.upper(),
        "sensors": uplink.object if uplink.object is not None else {},
    }
    if uplink.deduplicationId is not None:
        reading["event_id"] = uplink.deduplicationId.lower()
    if (timestamp := _utc(uplink.time)) is not None:
        reading["timestamp"] = timestamp
    metadata = {
        "f_cnt": uplink.fCnt,
        "f_port": uplink.fPort,
        "dr": uplink.dr,
        "dev_addr": uplink.devAddr,
        "device_name": uplink.deviceInfo.deviceName,
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    if metadata:
        reading["metadata"] = metadata
    return _json.encode(reading)


def seed001_loc(loc: Loc) -> Loc:
    """A canonical error location in seed 001's words."""
    if loc[:2] == ("sensors", "equipment"):
        return loc[2:]
    if loc[:1] == ("device_id",):
        return ("equipment_id",)
    if loc[:2] == ("metadata", "voltage"):
        return ("voltage",)
    return loc


def seed000_loc(loc: Loc) -> Loc:
    """A canonical error location in ChirpStack's words."""
    if loc[:1] == ("sensors",):
        return ("object", *loc[1:])
    renamed = {"device_id": "deviceInfo.devEui", "event_id": "deduplicationId", "timestamp": "time"}
    if loc and isinstance(loc[0], str) and loc[0] in renamed:
        return (renamed[loc[0]], *loc[1:])
    return loc


def relocate(failure: ValidationFailure, rename: Callable[[Loc], Loc]) -> ValidationFailure:
    """``failure`` with every error's location passed through ``rename``, keeping a leading
    batch index in front."""
    errors = []
    for error in failure.errors:
        loc = error.loc
        batched = bool(loc) and isinstance(loc[0], int)
        loc = (loc[0], *rename(loc[1:])) if batched else rename(loc)
        errors.append(FieldError(loc, error.message, error.type))
    return type(failure)(errors, event_id=failure.event_id)


class _LiveReading(msgspec.Struct, frozen=True):
    """What seed 002's live message needs of a curated reading (:class:`CuratedReading`)."""

    event_id: str
    device_id: str
    ts: str
    received_at: str
    sensors: msgspec.Raw
    metadata: Any = None
    device_name: str | None = None
    profile: str | None = None
    location: Any = None
    tags: list[str] = []


_live_reading = msgspec.json.Decoder(_LiveReading)


def seed002_live_reading(curated: bytes | msgspec.Raw) -> bytes:
    """A curated reading as seed 002's ``EnrichedSensorReading``: ``timestamp`` for ``ts``, and
    the registry's entry under ``device_metadata`` (``name``, ``profile``, ``location``,
    ``tags``; the keys it has). Raises ``msgspec.DecodeError`` if it is not a curated reading.

    The seed names ``device_id``, ``timestamp``, ``received_at``, ``sensors`` and
    ``device_metadata.location``; ``event_id`` and the device's own ``metadata`` are added."""
    item = _live_reading.decode(curated)
    registry: dict[str, Any] = {
        "name": item.device_name,
        "profile": item.profile,
        "location": item.location,
        "tags": item.tags or None,
    }
    reading: dict[str, Any] = {
        "event_id": item.event_id,
        "device_id": item.device_id,
        "timestamp": item.ts,
        "received_at": item.received_at,
        "sensors": item.sensors,
        "device_metadata": {k: v for k, v in registry.items() if v is not None},
    }
    if item.metadata is not None:
        reading["metadata"] = item.metadata
    return _json.encode(reading)

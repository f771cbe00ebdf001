"""Avro encoding of the analytics topics: the Confluent wire format, schemas from ``avro/``.

Every record value is ``0x00`` + the schema id (4 bytes, big-endian) + the Avro binary body,
which Kafka tools decode out of the box given the registry (kcat ``-s value=avro -r <url>``,
Confluent's and Apicurio's deserializers, Spark's ``from_avro``, Flink's
``avro-confluent``). The schema files in ``avro/`` are the contracts; ``avro/history/`` keeps
every published version, and a unit test checks that each file can read what every older
version wrote (BACKWARD, the registry's rule too).

This module is pure: it never talks to the registry; schema ids are given to it
(``connectors.schema_registry`` finds them). fastavro parses the schemas (once), decodes, and
encodes every contract; ``fleet.readings.v1``, one record per reading, is written by a writer
specialised for its schema (:meth:`AvroEncoder.readings`, byte-identical to fastavro), with the
writer generated from the schema (``schemas.avro_writer``) for what it does not cover.

=========================  =================  ===============================================
topic (default name)       contract           turn a value into a datum with
=========================  =================  ===============================================
``fleet.readings.v1``      ``readings``       :func:`reading_datum` (``CuratedReading``)
``fleet.device-status.v1`` ``device-status``  :func:`status_datum` (``StatusChange``)
``fleet.alerts.v1``        ``alerts``         ``contract_wire.alert_event_datum`` (``AlertEvent``)
``fleet.readings-1m.v1``   ``readings-1m``    :func:`rollup_datum` (``Rollup``)
``fleet.deadletter.v1``    ``deadletter``     :func:`dead_letter_datum` (``DeadLetter``)
=========================  =================  ===============================================
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Literal

import fastavro
import msgspec

from schemas.avro_sensors import (
    NULL,
    SOME,
    KnownSensors,
    optional_string,
    sensors_schema,
    sensors_writer,
    string_bytes,
)
from schemas.avro_writer import AvroWriter, compile_writer, long_bytes
from schemas.catalogue import sensor_types
from schemas.events import CuratedReading, DeadLetter
from schemas.readings import Sensors
from schemas.status import Rollup, StatusChange

__all__ = [
    "CONTRACTS",
    "HISTORY_DIR",
    "MAGIC",
    "SCHEMA_DIR",
    "AvroEncoder",
    "Contract",
    "FramingError",
    "ReadingsEncoder",
    "dead_letter_datum",
    "decode",
    "framed_schema_id",
    "parsed_schema",
    "reading_datum",
    "registry_bytes",
    "rollup_datum",
    "schema_json",
    "status_datum",
]

Contract = Literal["readings", "device-status", "alerts", "readings-1m", "deadletter"]
CONTRACTS: Final[tuple[Contract, ...]] = (
    "readings",
    "device-status",
    "alerts",
    "readings-1m",
    "deadletter",
)
SCHEMA_DIR: Final = Path(__file__).parent / "avro"
HISTORY_DIR: Final = SCHEMA_DIR / "history"
MAGIC: Final = b"\x00"
_HEADER_BYTES: Final = 5

Datum = dict[str, Any]


class FramingError(ValueError):
    """A value that is not in the Confluent wire format."""


def schema_json(contract: Contract) -> str:
    """The contract's schema as compact JSON text (what is registered)."""
    return json.dumps(_schema_dict(contract), separators=(",", ":"))


@cache
def _schema_dict(contract: Contract) -> dict[str, Any]:
    if contract not in CONTRACTS:
        raise KeyError(f"unknown Avro contract {contract!r}; known: {', '.join(CONTRACTS)}")
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{contract}.avsc").read_text("utf-8"))
    return loaded


@cache
def parsed_schema(contract: Contract) -> Any:
    """The contract's schema parsed by fastavro (parsed once per process)."""
    return fastavro.parse_schema(_schema_dict(contract))


@cache
def _readings_writer() -> AvroWriter:
    """The generated writer of the readings schema (fastavro has checked the schema)."""
    parsed_schema("readings")
    return compile_writer(copy.deepcopy(_schema_dict("readings")))


class AvroEncoder:
    """Encodes datums of one contract, framed with one registry schema id."""

    __slots__ = ("_prefix", "_schema", "contract", "schema_id")

    def __init__(self, contract: Contract, schema_id: int) -> None:
        if not 0 <= schema_id < 2**31:
            raise ValueError(f"schema id {schema_id} is not a registry id (0 .. 2**31-1)")
        self.contract = contract
        self.schema_id = schema_id
        self._schema = parsed_schema(contract)
        self._prefix = MAGIC + schema_id.to_bytes(4, "big")

    def encode(self, datum: Datum) -> bytes:
        """The framed record value; raises ValueError/TypeError if ``datum`` breaks the schema."""
        out = BytesIO()
        out.write(self._prefix)
        fastavro.schemaless_writer(out, self._schema, datum)
        return out.getvalue()

    def readings(self) -> ReadingsEncoder:
        """``CuratedReading -> bytes`` for ``fleet.readings.v1`` (this must be its encoder)."""
        if self.contract != "readings":
            raise ValueError(f"the {self.contract!r} encoder cannot encode readings")
        return ReadingsEncoder(self._prefix)


class ReadingsEncoder:
    """Framed ``fleet.readings.v1`` values of curated readings: call it with a reading.

    The hot path: a writer specialised for the readings schema that reads the curated
    reading itself (:class:`_ReadingWriter`); sensors it does not know (generic ones from
    outside the catalogue, or JSON not as the validator writes it) go through
    :func:`reading_datum` and the writer generated from the schema (``schemas.avro_writer``).
    Either way the bytes are those of :meth:`AvroEncoder.encode` of :func:`reading_datum`
    (fastavro), which unit tests check.
    """

    __slots__ = ("_general", "_prefix", "_writer")

    def __init__(self, prefix: bytes) -> None:
        self._prefix, self._general = prefix, _readings_writer()
        self._writer = _ReadingWriter(prefix)

    def __call__(self, reading: CuratedReading) -> bytes:
        return self.with_sensors(reading, None)

    @property
    def prefix(self) -> bytes:
        """The framing of every value (magic byte and schema id)."""
        return self._prefix

    def with_sensors(self, reading: CuratedReading, sensors: object) -> bytes:
        """The value of ``reading``, given the validator's ``Sensors`` struct its sensors JSON
        was encoded from (``schemas.events.validate_event_with_sensors``): read instead of
        decoding the JSON again. Anything else (None) and the JSON is decoded."""
        try:
            value = self._writer.value(reading, sensors)
            if value is None:
                out = bytearray(self._prefix)
                self._general(reading_datum(reading, micros=True), out)
                value = bytes(out)
        except (struct.error, TypeError, AttributeError, KeyError, OverflowError) as exc:
            message = f"reading {reading.event_id} does not fit the readings schema: {exc!r}"
            raise ValueError(message) from exc
        return value


def framed_schema_id(value: bytes) -> int:
    """The schema id of a framed value; FramingError if it is not framed."""
    if len(value) < _HEADER_BYTES or value[:1] != MAGIC:
        raise FramingError("not an Avro record in the Confluent wire format (magic byte 0)")
    return int.from_bytes(value[1:_HEADER_BYTES], "big")


def decode(value: bytes, writer_schema: Any, reader_schema: Any | None = None) -> Datum:
    """A framed value's datum, written with ``writer_schema`` (resolved to ``reader_schema``)."""
    framed_schema_id(value)
    body = BytesIO(value[_HEADER_BYTES:])
    datum = fastavro.schemaless_reader(body, writer_schema, reader_schema)
    if not isinstance(datum, dict):
        raise FramingError("the schema does not describe a record")
    return datum


_NAMESPACE: Final = "dev.fleetstream.v1"
_SENSOR_RECORDS: Final = {  # sensor type -> the full name of its record (catalogue structs)
    field["name"]: f"{_NAMESPACE}.{field['type'][1]['name']}"
    for field in sensors_schema()["fields"]
    if isinstance(field["type"], list) and field["type"][1]["type"] == "record"
}
_CATALOGUE_SENSORS: Final = frozenset(sensor_types())
_sensors_decoder = msgspec.json.Decoder(dict[str, dict[str, Any]])

# Datums name the branch of every non-null union they fill (fastavro's tuple notation,
# ``(type name, value)``): without it fastavro tries each branch with a full validation, which
# made a reading ~3x dearer to encode (bench/RESULTS.md).


def _scalar(value: Any) -> tuple[str, Any]:
    """A metadata value with its branch of ``["boolean", "long", "double", "string"]``."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int):
        return ("long", value)
    if isinstance(value, float):
        return ("double", value)
    return ("string", value)


def _measure(value: Any) -> tuple[str, Any]:
    """A generic sensor value with its branch of ``["boolean", "double"]``."""
    return ("boolean", value) if isinstance(value, bool) else ("double", float(value))


def _measures(values: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {name: _measure(value) for name, value in values.items()}


def _sensors(raw: msgspec.Raw) -> dict[str, Any]:
    decoded: dict[str, Any] = _sensors_decoder.decode(raw)
    sensors: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, values in decoded.items():
        record = _SENSOR_RECORDS.get(name)
        if record is not None:
            sensors[name] = (record, values)
        elif name in _CATALOGUE_SENSORS:  # "generic": a map
            sensors[name] = ("map", _measures(values))
        else:
            other[name] = _measures(values)
    sensors["other"] = other
    return sensors


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def reading_datum(reading: CuratedReading, *, micros: bool = False) -> Datum:
    """The ``readings`` datum of a curated reading (sensors decoded from its JSON).

    Timestamps are aware datetimes, or epoch microseconds with ``micros`` (for the schema
    without logical types).
    """
    metadata = reading.metadata
    location = reading.location
    processed_at = reading.processed_at
    if micros:
        ts: Any = _micros(reading.ts)
        received_at: Any = _micros(reading.received_at)
        processed: Any = None if processed_at is None else _micros(processed_at)
    else:
        ts, received_at, processed = reading.ts, reading.received_at, processed_at
    return {
        "schema_version": reading.schema_version,
        "event_id": reading.event_id,
        "device_id": reading.device_id,
        "ts": ts,
        "received_at": received_at,
        "source": reading.source,
        "sensors": _sensors(reading.sensors),
        "metadata": None
        if metadata is None
        else ("map", {key: _scalar(value) for key, value in metadata.items()}),
        "device_name": reading.device_name,
        "profile": reading.profile,
        "location": None if location is None else msgspec.json.encode(location).decode(),
        "tags": reading.tags,
        "processed_at": processed,
        "lag_ms": reading.lag_ms,
        "replayed": reading.replayed,
    }


def status_datum(change: StatusChange) -> Datum:
    """The ``device-status`` datum of a status transition."""
    return msgspec.structs.asdict(change)


def rollup_datum(rollup: Rollup) -> Datum:
    """The ``readings-1m`` datum of a rollup."""
    return msgspec.structs.asdict(rollup)


def dead_letter_datum(letter: DeadLetter) -> Datum:
    """The ``deadletter`` datum of a dead letter (error locations as text)."""
    datum = msgspec.structs.asdict(letter)
    datum["errors"] = [
        {"loc": [str(part) for part in error.loc], "message": error.message, "type": error.type}
        for error in letter.errors
    ]
    return datum


# --- the readings hot path -----------------------------------------------------------------
#
# Building a datum (dicts and branch tuples) and walking it cost more than writing the bytes:
# the writer below reads the curated reading's attributes, and its sensors through the writer
# the catalogue generates (``schemas.avro_sensors``). Its bytes must be fastavro's; the unit
# tests compare them on generated readings and edge values.


_pack_double: Final = struct.Struct("<d").pack
_SOURCES: Final = {
    symbol: long_bytes(index)
    for index, symbol in enumerate(_schema_dict("readings")["fields"][5]["type"]["symbols"])
}
# ["null", X] unions: branch 0 is null (one 0 byte), branch 1 (2 zigzagged) prefixes a value.
_NULL: Final = NULL
_SOME: Final = SOME
_SMALL_LONGS: Final = tuple(long_bytes(n) for n in range(64))  # index n: the long n
_BRANCH_0_BOOLEAN: Final = {True: b"\x00\x01", False: b"\x00\x00"}  # a union's first branch
_string: Final = string_bytes
_optional_string: Final = optional_string
_sensors_bytes: Final = sensors_writer()
_known_sensors_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(KnownSensors)


class _TimestampBytes:
    """Epoch microseconds of a datetime, Avro-encoded; the last one is kept, since a batch's
    readings share ``processed_at`` and an edge request's share ``received_at``."""

    __slots__ = ("_encoded", "_moment")

    def __init__(self) -> None:
        self._moment: datetime | None = None
        self._encoded = b""

    def of(self, moment: datetime) -> bytes:
        if moment == self._moment:  # equal instants, whatever the time zones
            return self._encoded
        encoded = long_bytes((moment - _EPOCH) // _MICROSECOND)  # _micros(), without a call
        self._moment, self._encoded = moment, encoded
        return encoded


_DEVICE_CACHE_LIMIT: Final = 100_000
DeviceKey = tuple[str, str | None, str | None, bytes | None, tuple[str, ...]]


class _ReadingWriter:
    """Writes a ``CuratedReading`` as a framed ``readings`` record, reading its attributes.

    Every field's bytes are computed and joined once (``bytearray +=`` per field cost 2.5x
    more). What a reading takes from its device (its id and the registry's name, profile,
    location and tags) is the same for every reading of the device: encoded once and kept,
    keyed by the values themselves (the location as its JSON), so a registry change is a new
    key.
    """

    __slots__ = ("_devices", "_prefix", "_processed_at", "_received_at", "_ts")

    def __init__(self, prefix: bytes = b"") -> None:
        self._prefix = prefix
        self._ts, self._received_at = _TimestampBytes(), _TimestampBytes()
        self._processed_at = _TimestampBytes()
        self._devices: dict[DeviceKey, tuple[bytes, bytes]] = {}

    def value(self, reading: CuratedReading, sensors: object = None) -> bytes | None:
        """The prefix and the record; None if its sensors need the general path.

        ``sensors``: the validator's struct ``reading.sensors`` was encoded from, if known."""
        if type(sensors) is not Sensors:
            try:
                sensors = _known_sensors_decoder.decode(reading.sensors)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return None
        device_id, registry = self._device(reading)
        event_id = reading.event_id.encode()
        version, length, replayed = reading.schema_version, len(event_id), reading.replayed
        metadata, processed_at, lag_ms = reading.metadata, reading.processed_at, reading.lag_ms
        # Small longs inline (a call per value cost more than the bytes): schema_version,
        # the event_id's length (36) and replayed nearly always take the table.
        return b"".join(
            (
                self._prefix,
                _SMALL_LONGS[version] if 0 <= version < 64 else long_bytes(version),
                _SMALL_LONGS[length] if length < 64 else long_bytes(length),
                event_id,
                device_id,
                self._ts.of(reading.ts),
                self._received_at.of(reading.received_at),
                _SOURCES[reading.source],
                _sensors_bytes(sensors),
                _NULL if metadata is None else _metadata_bytes(metadata),
                registry,
                _NULL if processed_at is None else _SOME + self._processed_at.of(processed_at),
                _NULL if lag_ms is None else _SOME + _pack_double(lag_ms),
                _SMALL_LONGS[replayed] if 0 <= replayed < 64 else long_bytes(replayed),
            )
        )

    def _device(self, reading: CuratedReading) -> tuple[bytes, bytes]:
        """The encoded device_id, and the fields device_name .. tags."""
        location = reading.location
        location_json = None if location is None else msgspec.json.encode(location)
        key = (
            reading.device_id,
            reading.device_name,
            reading.profile,
            location_json,
            tuple(reading.tags),
        )
        encoded = self._devices.get(key)
        if encoded is None:
            encoded = _string(key[0]), registry_bytes(key)
            if len(self._devices) >= _DEVICE_CACHE_LIMIT:  # a bound, not an LRU
                self._devices.clear()
            self._devices[key] = encoded
        return encoded


def registry_bytes(key: DeviceKey) -> bytes:
    """The fields ``device_name`` .. ``tags`` of a device's readings, from
    ``(device_id, device_name, profile, location as JSON, tags)``."""
    _, device_name, profile, location_json, tags = key
    location = (
        _NULL if location_json is None else _SOME + long_bytes(len(location_json)) + location_json
    )
    return b"".join(
        (_optional_string(device_name), _optional_string(profile), location, _strings_bytes(tags))
    )


def _metadata_bytes(metadata: dict[str, Any]) -> bytes:
    """A map of ``["boolean", "long", "double", "string"]`` in its union's branch 1 (``02``);
    branches chosen as :func:`_scalar` chooses them."""
    if not metadata:
        return _SOME + _NULL
    parts = [_SOME, long_bytes(len(metadata))]
    for key, value in metadata.items():
        parts.append(_string(key))
        if isinstance(value, bool):
            parts.append(_BRANCH_0_BOOLEAN[value])
        elif isinstance(value, int):
            parts.append(b"\x02" + long_bytes(value))
        elif isinstance(value, float):
            parts.append(b"\x04" + _pack_double(value))
        else:
            parts.append(b"\x06" + _string(value))
    parts.append(_NULL)
    return b"".join(parts)


def _strings_bytes(texts: Sequence[str]) -> bytes:
    """An array of strings."""
    if not texts:
        return _NULL
    return b"".join((long_bytes(len(texts)), *map(_string, texts), _NULL))

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
generated from its schema (``schemas.avro_writer``, 2.7x faster, byte-identical to fastavro).

=========================  =================  ===============================================
topic (default name)       contract           turn a value into a datum with
=========================  =================  ===============================================
``fleet.readings.v1``      ``readings``       :func:`reading_datum` (``CuratedReading``)
``fleet.device-status.v1`` ``device-status``  :func:`status_datum` (``StatusChange``)
``fleet.alerts.v1``        ``alerts``         :func:`alert_datum` (keyword arguments)
``fleet.readings-1m.v1``   ``readings-1m``    :func:`rollup_datum` (``Rollup``)
``fleet.deadletter.v1``    ``deadletter``     :func:`dead_letter_datum` (``DeadLetter``)
=========================  =================  ===============================================
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, Final, Literal

import fastavro
import msgspec

from schemas.avro_writer import AvroWriter, compile_writer
from schemas.catalogue import sensor_types
from schemas.events import CuratedReading, DeadLetter
from schemas.status import Rollup, StatusChange

__all__ = [
    "CONTRACTS",
    "HISTORY_DIR",
    "MAGIC",
    "SCHEMA_DIR",
    "AvroEncoder",
    "Contract",
    "FramingError",
    "alert_datum",
    "dead_letter_datum",
    "decode",
    "framed_schema_id",
    "parsed_schema",
    "reading_datum",
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

    def readings(self) -> Callable[[CuratedReading], bytes]:
        """``CuratedReading -> bytes`` for ``fleet.readings.v1`` (this must be its encoder).

        The hot path: a writer generated from the schema (``schemas.avro_writer``), fed epoch
        microseconds for the timestamps; the bytes are those of :meth:`encode` of
        :func:`reading_datum` (fastavro), which a unit test checks.
        """
        if self.contract != "readings":
            raise ValueError(f"the {self.contract!r} encoder cannot encode readings")
        prefix, write = self._prefix, _readings_writer()

        def encode(reading: CuratedReading) -> bytes:
            out = bytearray(prefix)
            try:
                write(reading_datum(reading, micros=True), out)
            except (struct.error, TypeError, AttributeError, KeyError, OverflowError) as exc:
                message = f"reading {reading.event_id} does not fit the readings schema: {exc!r}"
                raise ValueError(message) from exc
            return bytes(out)

        return encode


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
_SENSOR_RECORDS: Final = {
    "ld2410": f"{_NAMESPACE}.Ld2410",
    "pir": f"{_NAMESPACE}.Pir",
    "mq134": f"{_NAMESPACE}.Mq134",
    "equipment": f"{_NAMESPACE}.Equipment",
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


def alert_datum(
    *,
    alert_id: str,
    rule_id: str,
    rule_version: int,
    device_id: str,
    severity: Literal["info", "warning", "critical"],
    state: Literal["fired", "cleared"],
    fired_at: datetime,
    cleared_at: datetime | None = None,
    field: str | None = None,
    value: float | None = None,
    threshold: float | None = None,
    event_id: str | None = None,
    message: str | None = None,
) -> Datum:
    """The ``alerts`` datum (see ``avro/alerts.avsc`` for what each field means)."""
    return {
        "alert_id": alert_id,
        "rule_id": rule_id,
        "rule_version": rule_version,
        "device_id": device_id,
        "severity": severity,
        "state": state,
        "fired_at": fired_at,
        "cleared_at": cleared_at,
        "field": field,
        "value": value,
        "threshold": threshold,
        "event_id": event_id,
        "message": message,
        "schema_version": 1,
    }

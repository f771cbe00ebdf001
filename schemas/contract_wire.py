"""Values of ``fleet.device-status.v1``, ``fleet.alerts.v1``, ``fleet.readings-1m.v1`` and
``fleet.deadletter.v1``: Confluent-framed Avro, or JSON on a topic kept in JSON for a release.

Every process that writes one of these topics (worker, MQTT front and bridge) calls
``connectors.schema_registry.install_contracts`` at start: it registers the schemas of the
topics written in Avro and hands their encoders to :data:`WIRE`; a topic named in
``FLEET_SCHEMA_REGISTRY__JSON_CONTRACTS`` keeps JSON values (and its subject carries no Avro
schema). Without that call (unit tests, tools) every topic is written in JSON.

Readers never need to know which: a framed value starts with the magic byte 0, a JSON value
with ``{``, so :func:`decode_status` and its siblings read both, and a topic that switches keeps
readable history. A framed value is read with the schema its id names (from the registry when
the process installed it, else the contract's current schema: the one this release writes)
and resolved to the current schema, whose fields the structs mirror.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import fastavro
import msgspec

from schemas.avro_codec import (
    MAGIC,
    AvroEncoder,
    Contract,
    Datum,
    dead_letter_datum,
    decode,
    framed_schema_id,
    parsed_schema,
    rollup_datum,
    status_datum,
)
from schemas.events import DeadLetter, dead_letter_decoder
from schemas.flows import AlertEvent, decode_alert_event
from schemas.readings import UUID_PATTERN
from schemas.status import Rollup, StatusChange, decode_rollup, decode_status_change

__all__ = [
    "JSON_CAPABLE",
    "WIRE",
    "ContractWire",
    "JsonContract",
    "alert_event_datum",
    "decode_alert",
    "decode_dead_letter",
    "decode_rollup_record",
    "decode_status",
    "encode_alert",
    "encode_dead_letter",
    "encode_rollup",
    "encode_status",
]

JsonContract = Literal["device-status", "alerts", "readings-1m", "deadletter"]
JSON_CAPABLE: Final[tuple[JsonContract, ...]] = (
    "device-status",
    "alerts",
    "readings-1m",
    "deadletter",
)
"""The contracts a topic may keep in JSON for a release (``fleet.readings.v1`` is Avro only)."""

SchemaResolver = Callable[[int], str]
"""A registry schema id -> the schema's text."""

_json = msgspec.json.Encoder()
_UUID: Final = re.compile(UUID_PATTERN)


class ContractWire:
    """What this process writes on each contract's topic, and the writer schemas it has met."""

    def __init__(self) -> None:
        self._encoders: dict[Contract, AvroEncoder] = {}
        self._resolve: SchemaResolver | None = None
        self._writers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def install(
        self, encoders: Mapping[Contract, AvroEncoder], resolve: SchemaResolver | None
    ) -> None:
        """Write the contracts in ``encoders`` in Avro (the others in JSON); ``resolve`` finds
        writer schemas of ids this process did not register."""
        with self._lock:
            self._encoders = dict(encoders)
            self._resolve = resolve
            self._writers = {e.schema_id: parsed_schema(e.contract) for e in encoders.values()}

    def reset(self) -> None:
        """Every contract in JSON again, no resolver (tests)."""
        self.install({}, None)

    def encoder(self, contract: Contract) -> AvroEncoder | None:
        """The Avro encoder of ``contract``; None while its topic is written in JSON."""
        return self._encoders.get(contract)

    def datum(self, contract: Contract, value: bytes) -> Datum:
        """The datum of a framed value, resolved to the contract's current schema; raises
        msgspec.DecodeError (as the JSON decoders do) when it is no such record."""
        writer = self._writer(framed_schema_id(value), contract)
        try:
            return decode(value, writer, parsed_schema(contract))
        except (ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
            raise msgspec.DecodeError(f"not a {contract} Avro record: {exc!r}") from exc

    def _writer(self, schema_id: int, contract: Contract) -> Any:
        writer = self._writers.get(schema_id)
        if writer is not None:
            return writer
        if self._resolve is None:
            return parsed_schema(contract)  # nothing better: the schema this release writes
        writer = fastavro.parse_schema(json.loads(self._resolve(schema_id)))
        with self._lock:
            self._writers[schema_id] = writer
        return writer


WIRE: Final = ContractWire()
"""The process's wire (see the module docstring)."""


def _framed(value: bytes) -> bool:
    return value[:1] == MAGIC


def encode_status(change: StatusChange) -> bytes:
    """A ``fleet.device-status.v1`` value."""
    encoder = WIRE.encoder("device-status")
    return _json.encode(change) if encoder is None else encoder.encode(status_datum(change))


def decode_status(value: bytes) -> StatusChange:
    """A ``fleet.device-status.v1`` value, Avro or JSON; raises ValueError/msgspec errors."""
    if not _framed(value):
        return decode_status_change(value)
    return msgspec.convert(WIRE.datum("device-status", value), StatusChange)


def encode_rollup(rollup: Rollup) -> bytes:
    """A ``fleet.readings-1m.v1`` value."""
    encoder = WIRE.encoder("readings-1m")
    return _json.encode(rollup) if encoder is None else encoder.encode(rollup_datum(rollup))


def decode_rollup_record(value: bytes) -> Rollup:
    """A ``fleet.readings-1m.v1`` value, Avro or JSON."""
    if not _framed(value):
        return decode_rollup(value)
    return msgspec.convert(WIRE.datum("readings-1m", value), Rollup)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """A ``fleet.deadletter.v1`` value. The schema's ``event_id`` is a uuid: one that is not
    (a reading that never passed an edge) is left out rather than fail the letter."""
    encoder = WIRE.encoder("deadletter")
    if encoder is None:
        return _json.encode(letter)
    datum = dead_letter_datum(letter)
    if letter.event_id is not None and not _UUID.match(letter.event_id):
        datum["event_id"] = None
    return encoder.encode(datum)


def decode_dead_letter(value: bytes) -> DeadLetter:
    """A ``fleet.deadletter.v1`` value, Avro or JSON; error locations come back with array
    indexes as ints (Avro keeps them as text)."""
    if not _framed(value):
        return dead_letter_decoder.decode(value)
    datum = WIRE.datum("deadletter", value)
    datum["event_id"] = _text(datum["event_id"])
    for error in datum["errors"]:
        error["loc"] = tuple(int(part) if part.isdigit() else part for part in error["loc"])
    return msgspec.convert(datum, DeadLetter)


def alert_event_datum(event: AlertEvent) -> Datum:
    """The ``alerts`` datum of an alert transition."""
    return {
        "alert_id": event.alert_id,
        "rule_id": event.rule_id,
        "rule_version": event.rule_version,
        "rule_name": event.rule_name,
        "device_id": event.device_id,
        "severity": event.severity,
        "state": event.state,
        "started_at": event.started_at,
        "fired_at": event.fired_at,
        "cleared_at": event.cleared_at,
        "field": None,
        "value": event.value,
        "threshold": None,
        "event_id": event.event_id,
        "message": event.message,
        "detected_at": event.detected_at,
        "schema_version": event.schema_version,
    }


def encode_alert(event: AlertEvent) -> bytes:
    """A ``fleet.alerts.v1`` value."""
    encoder = WIRE.encoder("alerts")
    return _json.encode(event) if encoder is None else encoder.encode(alert_event_datum(event))


def decode_alert(value: bytes) -> AlertEvent:
    """A ``fleet.alerts.v1`` value, Avro or JSON (a version-1 record's missing times are its
    ``fired_at``)."""
    if not _framed(value):
        return decode_alert_event(value)
    datum = WIRE.datum("alerts", value)
    if datum["event_id"] is None:
        raise msgspec.ValidationError("an alert without event_id: `$.event_id`")
    return AlertEvent(
        alert_id=str(datum["alert_id"]),
        rule_id=datum["rule_id"],
        rule_version=datum["rule_version"],
        rule_name=datum["rule_name"],
        device_id=datum["device_id"],
        severity=datum["severity"],
        state=datum["state"],
        started_at=datum["started_at"] or datum["fired_at"],
        fired_at=datum["fired_at"],
        cleared_at=datum["cleared_at"],
        value=datum["value"],
        message=datum["message"] or "",
        event_id=str(datum["event_id"]),
        detected_at=datum["detected_at"] or datum["fired_at"],
        schema_version=datum["schema_version"],
    )


def _text(value: uuid.UUID | str | None) -> str | None:
    """fastavro reads a ``uuid`` string as a UUID object."""
    return None if value is None else str(value)

"""The ``readings`` row of a curated reading, read from its JSON (the wire contract, schema
version 1), so the baselines keep working while ``schemas.events.CuratedReading`` grows fields.
Needs msgspec only: the Quix baseline imports it from its own virtualenv."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import msgspec

COLUMNS = (
    "event_id",
    "device_id",
    "ts",
    "received_at",
    "source",
    "sensor_types",
    "sensors",
    "metadata",
)


class Row(NamedTuple):
    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    source: str
    sensor_types: list[str]
    sensors: str
    """The sensors object as JSON text."""
    metadata: str | None


class _Curated(msgspec.Struct):
    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    source: str
    sensors: dict[str, Any]
    metadata: msgspec.Raw = msgspec.Raw(b"null")


_decoder = msgspec.json.Decoder(_Curated)
_encoder = msgspec.json.Encoder()


def row_of(curated_json: bytes) -> Row:
    """The row of one encoded curated reading (``msgspec.DecodeError`` if it is not one)."""
    curated = _decoder.decode(curated_json)
    metadata = bytes(curated.metadata)
    return Row(
        curated.event_id,
        curated.device_id,
        curated.ts,
        curated.received_at,
        curated.source,
        sorted(curated.sensors),
        _encoder.encode(curated.sensors).decode(),
        None if metadata == b"null" else metadata.decode(),
    )

"""Turning validated readings into raw events for ``fleet.raw.v1`` (no I/O here).

Event ids: a reading's own ``event_id`` wins; else an ``Idempotency-Key`` header gives every item
a deterministic id (uuid5 of the key and the item's index), so a retried request maps onto the
same events and the sinks drop the repeats; else a fresh UUIDv7 (time-ordered, index friendly).
The payload is each item's JSON exactly as the client sent it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec

from connectors.kafka.producer import Record
from schemas.events import RawEvent, Source, encode_raw_event, new_event_id
from schemas.readings import Reading

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d9a52-8c1e-4a8e-9a39-2f0b4b7f4d11")


def event_id_for(reading: Reading, index: int, idempotency_key: str | None) -> str:
    if reading.event_id is not None:
        return reading.event_id
    if idempotency_key:
        return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{idempotency_key}\x00{index}"))
    return new_event_id()


def raw_records(
    items: Sequence[tuple[Reading, msgspec.Raw]],
    *,
    received_at: datetime,
    source: Source,
    idempotency_key: str | None,
) -> tuple[list[str], list[Record]]:
    """The event ids and the (key, value) Kafka records for validated ``items``, in order."""
    event_ids: list[str] = []
    records: list[Record] = []
    for index, (reading, payload) in enumerate(items):
        event = RawEvent(
            event_id=event_id_for(reading, index, idempotency_key),
            device_id=reading.device_id,
            received_at=received_at,
            source=source,
            payload=payload,
        )
        event_ids.append(event.event_id)
        records.append((reading.device_id.encode(), encode_raw_event(event)))
    return event_ids, records

"""Turning validated readings into envelope items for ``fleet.raw.v1`` (no I/O here).

Event ids: a reading's own ``event_id`` wins; else an ``Idempotency-Key`` header gives every item
a deterministic id (uuid5 of the device id, the key and the item's index, so a retried request
maps onto the same events and the sinks drop the repeats, and two devices that happen to reuse
a key never collide); else a fresh UUIDv7 (time-ordered, index friendly). The payload is each
item's JSON exactly as the client sent it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec

from schemas.envelopes import encode_item
from schemas.events import RawEvent, Source, new_event_id
from schemas.readings import Reading

IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d9a52-8c1e-4a8e-9a39-2f0b4b7f4d11")

Item = tuple[str, bytes]
"""(device_id, encoded RawEvent): what the envelope batcher takes."""


def event_id_for(reading: Reading, index: int, idempotency_key: str | None) -> str:
    if reading.event_id is not None:
        return reading.event_id
    if idempotency_key:
        name = f"{reading.device_id}\x00{idempotency_key}\x00{index}"
        return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, name))
    return new_event_id()


def raw_items(
    items: Sequence[tuple[Reading, msgspec.Raw]],
    *,
    received_at: datetime,
    source: Source,
    idempotency_key: str | None,
) -> tuple[list[str], list[Item]]:
    """The event ids and the encoded envelope items for validated ``items``, in order."""
    event_ids: list[str] = []
    encoded: list[Item] = []
    for index, (reading, payload) in enumerate(items):
        event = RawEvent(
            event_id=event_id_for(reading, index, idempotency_key),
            device_id=reading.device_id,
            received_at=received_at,
            source=source,
            payload=payload,
        )
        event_ids.append(event.event_id)
        encoded.append((reading.device_id, encode_item(event)))
    return event_ids, encoded

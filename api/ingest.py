"""Turning validated readings into envelope items for ``fleet.raw.v1`` (no I/O here).

Event ids follow :func:`schemas.events.event_id_for`. What names a resend here is the
``Idempotency-Key`` header: the device id, the key and the item's index, so a retried request
maps onto the same events, and two devices that happen to reuse a key never collide. Without a
key every item gets a fresh UUIDv7 (time-ordered, index friendly). The payload is each item's
JSON exactly as the client sent it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from schemas.envelopes import encode_item
from schemas.events import IDEMPOTENCY_NAMESPACE, RawEvent, Source, event_id_for
from schemas.readings import Reading

Item = tuple[str, bytes]
"""(device_id, encoded RawEvent): what the envelope batcher takes."""


def _resend(reading: Reading, index: int, idempotency_key: str | None) -> str | None:
    if not idempotency_key:
        return None
    return f"{reading.device_id}\x00{idempotency_key}\x00{index}"


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
            event_id=event_id_for(
                reading, IDEMPOTENCY_NAMESPACE, _resend(reading, index, idempotency_key)
            ),
            device_id=reading.device_id,
            received_at=received_at,
            source=source,
            payload=payload,
        )
        event_ids.append(event.event_id)
        encoded.append((reading.device_id, encode_item(event)))
    return event_ids, encoded

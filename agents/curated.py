"""Reading a taken batch of curated envelopes per device, for the stateful agents.

The status and rollup agents keep one table row per device; they read each item once, group
the items by device (in partition order) and drop repeats by position: a curated item carries
the position of its raw record (``schemas.envelopes``), and a device's state remembers, per raw
partition, the last position it applied. A raw record that was validated twice (a crash before
validate committed its offset) therefore counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from agents.deadletters import KafkaMessage, dead_letter
from connectors.kafka.producer import Record
from schemas.envelopes import Position, decode_curated_envelope
from schemas.errors import ValidationFailure
from schemas.validation import decode_json


class Item(msgspec.Struct, frozen=True):
    """What the stateful agents read of a curated reading."""

    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    sensors: dict[str, Any]


_item_decoder = msgspec.json.Decoder(Item)


@dataclass
class DeviceItems:
    """One device's readings of a batch, in order, and the message to write its state as."""

    message_index: int
    """Index (in the batch) of a message of the device's partition, for ``writing_as``."""
    items: list[tuple[Item, Position | None]] = field(default_factory=list)


@dataclass
class Batch:
    devices: dict[str, DeviceItems]
    letters: list[Record]


def read_batch(messages: Sequence[KafkaMessage], *, stage: str, now: datetime) -> Batch:
    """Group the items of curated envelopes by device; what cannot be read becomes a letter."""
    devices: dict[str, DeviceItems] = {}
    letters: list[Record] = []
    for index, message in enumerate(messages):
        try:
            envelope = decode_curated_envelope(message.value)
        except ValidationFailure as exc:
            letters.append(dead_letter(stage, message, exc, now))
            continue
        positions = envelope.positions
        for n, raw in enumerate(envelope.items):
            try:
                item = decode_json(_item_decoder, raw)
            except ValidationFailure as exc:
                letters.append(dead_letter(stage, message, exc, now, original=bytes(raw), item=n))
                continue
            entry = devices.get(item.device_id)
            if entry is None:
                entry = devices[item.device_id] = DeviceItems(index)
            entry.items.append((item, None if positions is None else positions[n]))
    return Batch(devices, letters)


def new_items(
    items: Sequence[tuple[Item, Position | None]], applied: dict[str, tuple[int, int]]
) -> list[Item]:
    """The items past ``applied`` (raw partition → last (offset, index)); advances it."""
    fresh: list[Item] = []
    for item, position in items:
        if position is not None:
            partition, offset, index = position
            key = str(partition)
            last = applied.get(key)
            if last is not None and (offset, index) <= tuple(last):
                continue
            applied[key] = (offset, index)
        fresh.append(item)
    return fresh

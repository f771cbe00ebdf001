"""Reading a taken batch of curated envelopes per device, for the stateful agents.

The status and rollup agents keep one table row per device; they read each item once, group
the items by device (in partition order) and drop repeats by position: a curated item carries
the position of its raw record (``schemas.envelopes``), and a device's state remembers, per raw
partition, the last position it applied. A raw record that was validated twice (a crash before
validate committed its offset) therefore counts once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from agents.deadletters import KafkaMessage, dead_letter, item_letters
from connectors.kafka.producer import Record
from schemas.envelopes import CuratedReader, Position
from schemas.errors import ValidationFailure


class Item(msgspec.Struct, frozen=True, gc=False):
    """What the stateful agents read of a curated reading (never in a reference cycle: JSON
    values only, so the garbage collector need not track it)."""

    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    sensors: dict[str, Any]


_reader = CuratedReader(Item, positions=True)


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


async def read_batch_yielding(
    messages: Sequence[KafkaMessage], *, stage: str, now: datetime, turn: Turns
) -> Batch:
    """Group the items of curated envelopes by device; what cannot be read becomes a letter.
    Gives the event loop a turn every ``turn.every`` items, so a 5 s rollups batch does not
    hold up validation meanwhile."""
    reader = BatchReader(stage, now)
    for index, message in enumerate(messages):
        await turn.took(reader.read(index, message))
    return reader.batch


ITEMS_PER_TURN = 500
"""Curated items read or applied between two turns of the event loop: a few ms of work
(decision 29)."""
TABLE_WRITE_ITEMS = 5
"""A table row (encoded, then one record of a changelog produce: ~10 µs) counted in items."""


class Turns:
    """Hands the event loop back after every ``every`` units of synchronous work.

    The worker's agents share one event loop: a batch step that runs for 100 ms delays the
    validate agent and the Postgres sink, and every reading they hold, by as much.
    ``await turn.took(n)`` after each piece of work yields once ``every`` units added up (a few
    ms of work per turn)."""

    __slots__ = ("_done", "every")

    def __init__(self, every: int) -> None:
        self.every = every
        self._done = 0

    async def took(self, units: int = 1) -> None:
        self._done += units
        if self._done >= self.every:
            self._done = 0
            await asyncio.sleep(0)


class BatchReader:
    """Reads curated envelopes one by one into a :class:`Batch`."""

    def __init__(self, stage: str, now: datetime) -> None:
        self.stage = stage
        self.now = now
        self.batch = Batch({}, [])

    def read(self, index: int, message: KafkaMessage) -> int:
        """Add one curated envelope's items; returns how many items it held."""
        devices, letters = self.batch.devices, self.batch.letters
        try:
            read = _reader.read(message.value)
        except ValidationFailure as exc:
            letters.append(dead_letter(self.stage, message, exc, self.now))
            return 1
        letters += item_letters(self.stage, message, read.failures, self.now)
        positions = read.positions
        for n, item in enumerate(read.items):
            entry = devices.get(item.device_id)
            if entry is None:
                entry = devices[item.device_id] = DeviceItems(index)
            entry.items.append((item, None if positions is None else positions[n]))
        return len(read.items) + len(read.failures)


_SCALARS = (bool, int, float, str)

FIELD_NAMES: dict[str, dict[str, str]] = {}
"""``"<sensor>.<field>"`` by sensor and field, built once (the rollups, the status table's last
values): an f-string per field and reading would be a fifth of what adding a reading costs."""
NAMES_KEPT = 1000
"""A bound, not an LRU: generic sensors name their own fields."""


def names_of(sensor: str) -> dict[str, str]:
    """A new, empty cache of ``sensor``'s field names (:data:`FIELD_NAMES`)."""
    if len(FIELD_NAMES) >= NAMES_KEPT:
        FIELD_NAMES.clear()
    names = FIELD_NAMES[sensor] = {}
    return names


def name_of(names: dict[str, str], sensor: str, field_name: str) -> str:
    """``"<sensor>.<field>"``, kept in ``names`` (the sensor's cache)."""
    if len(names) >= NAMES_KEPT:
        names.clear()
    name = names[field_name] = f"{sensor}.{field_name}"
    return name


class LastValues:
    """The newest value of every sensor field over a run of readings, flattened once.

    The same as ``dict.update(measurements(reading.sensors))`` per reading (the status table's
    last values, the Redis status hash), at a fraction of the cost: a reading only updates
    one small dict per sensor type, and the ``"<sensor>.<field>"`` names are built once per
    device and batch, not once per reading. Curated sensor fields are scalars (the catalogue
    and the generic rule allow nothing else), so filtering them at the end is exact.
    """

    __slots__ = ("_by_sensor",)

    def __init__(self) -> None:
        self._by_sensor: dict[str, dict[str, Any]] = {}

    def add(self, sensors: Mapping[str, Any]) -> None:
        by_sensor = self._by_sensor
        for sensor, values in sensors.items():
            if not isinstance(values, dict):
                continue
            kept = by_sensor.get(sensor)
            if kept is None:
                by_sensor[sensor] = dict(values)
            else:
                kept.update(values)

    def flattened(self) -> Iterator[tuple[str, Any]]:
        """``("ld2410.distance_cm", 150)``, ... as ``schemas.catalogue.measurements`` names them."""
        for sensor, values in self._by_sensor.items():
            names = FIELD_NAMES.get(sensor)
            if names is None:
                names = names_of(sensor)
            for name, value in values.items():
                if isinstance(value, _SCALARS):
                    yield names.get(name) or name_of(names, sensor, name), value


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

"""Table rows held in memory until their device's tick (decision 40).

A device of a large fleet sends seconds apart, so nearly every batch holds one reading of it:
writing its status row per batch made the row (decode, encode, changelog record) cost as much
as the reading. Held rows are written by the rollups' ticks instead
(:class:`agents.rollups.Rollups`), once per ``FLEET_STREAM__ROLLUP_PUBLISH_INTERVAL_S`` for the
devices of one slot, just before the tick acks the batches whose devices are all written: the
rule that a batch is acked only once its rows are in the changelog holds as before, and a held
row is read from here, decoded, rather than from the table.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

SLOTS = 5
"""Ticks per publish interval; each writes the devices of one slot (a fifth of the fleet)."""

S = TypeVar("S")


def slot_of(device_id: str, slots: int) -> int:
    """The device's slot: a stable hash, so ticks pick the same devices across worker
    processes and restarts (``hash()`` of a str is not)."""
    return zlib.crc32(device_id.encode()) % slots


@dataclass(slots=True)
class _Held(Generic[S]):
    event: Any
    """An event of the device's partition: the row goes to that partition of the changelog."""
    state: S


class HeldRows(Generic[S]):
    """Rows applied but not written yet, by device and by slot."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._rows: dict[str, _Held[S]] = {}
        self._by_slot: list[dict[str, None]] = [{} for _ in range(slots)]

    def get(self, device_id: str) -> S | None:
        held = self._rows.get(device_id)
        return None if held is None else held.state

    def hold(self, device_id: str, event: Any, state: S) -> None:
        """Keep ``state`` until the tick of the device's slot (the newest event wins)."""
        held = self._rows.get(device_id)
        if held is None:
            self._rows[device_id] = _Held(event, state)
            self._by_slot[slot_of(device_id, self.slots)][device_id] = None
        else:
            held.event, held.state = event, state

    def release(self, device_id: str) -> None:
        """Written by someone else (a transition writes its row at once)."""
        if self._rows.pop(device_id, None) is not None:
            del self._by_slot[slot_of(device_id, self.slots)][device_id]

    def take(self, slot: int | None) -> list[tuple[Any, S]]:
        """The rows of ``slot`` (None: all of them), which stop being held."""
        slots = range(self.slots) if slot is None else (slot,)
        taken: list[tuple[Any, S]] = []
        for n in slots:
            for device_id in self._by_slot[n]:
                held = self._rows.pop(device_id)
                taken.append((held.event, held.state))
            self._by_slot[n] = {}
        return taken

    def __len__(self) -> int:
        return len(self._rows)

"""Device status and rollup contracts (JSON-encoded with msgspec).

======================================  ===========  ==================================
where                                   key          value
======================================  ===========  ==================================
``fleet.device-status.v1`` (compacted)  device_id    :class:`StatusChange`
``fleet.readings-1m.v1``                device_id    :class:`Rollup`
status table changelog (Faust)          device_id    :class:`DeviceState`
rollup table changelog (Faust)          device_id    :class:`RollupState`
======================================  ===========  ==================================

A device's transitions are numbered ``seq`` = 1, 2, 3, ...: odd ones go online, even ones
offline. The status agent emits a transition before it stores its new ``seq``; after a crash in
between, the same transition (same ``seq``) is emitted again. Consumers apply a transition only
if its ``seq`` is above the last one they applied, which makes every transition take effect
exactly once (the Redis sink does so atomically).

A rollup record carries the window's whole aggregate so far, not a delta: a consumer keeps, per
(device_id, field, window_start), the record with the highest ``count`` (later readings only
ever raise it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = [
    "DeviceState",
    "Rollup",
    "RollupState",
    "StatusChange",
    "decode_device_state",
    "decode_rollup",
    "decode_rollup_state",
    "decode_status_change",
    "encode",
]

Reason = Literal["reading", "timeout"]


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    """A device went online (a reading arrived) or offline (silent for ``timeout_s``)."""

    device_id: str
    seq: int
    online: bool
    reason: Reason
    changed_at: datetime
    """When the worker decided (worker clock)."""
    last_seen: datetime | None
    """The edge's receive time of the device's latest reading."""
    timeout_s: int
    schema_version: int = 1


class DeviceState(msgspec.Struct, kw_only=True):
    """One row of the device status table (changelogged; survives restarts and rebalances)."""

    device_id: str
    first_seen: datetime
    last_seen: datetime
    """Latest ``received_at`` of the device's readings (what the inactivity timer looks at)."""
    last_ts: datetime
    """Latest reading timestamp (the device's own clock)."""
    last_event_id: str
    count: int
    """Readings applied, each once (repeats after a crash are dropped by position)."""
    online: bool = False
    seq: int = 0
    """The last transition emitted (0: none yet)."""
    changed_at: datetime | None = None
    last_values: dict[str, Any] = {}
    """``"sensor.field"`` → latest value."""
    positions: dict[str, tuple[int, int]] = {}
    """Raw partition (as text) → (offset, index) of the last reading applied from it."""


class Rollup(msgspec.Struct, frozen=True, kw_only=True):
    """A 1-minute tumbling window of one device's sensor field, as far as it is known."""

    device_id: str
    field: str
    """``"sensor.field"``, e.g. ``"mq134.gas_concentration"``."""
    window_start: datetime
    window_end: datetime
    count: int
    min: float
    max: float
    sum: float
    mean: float
    schema_version: int = 1


class RollupState(msgspec.Struct, kw_only=True):
    """One row of the rollup table: the device's open windows and what it applied."""

    device_id: str
    windows: dict[int, dict[str, list[float]]] = {}
    """Window start (epoch seconds) → field → [count, min, max, sum]."""
    newest_received: float = 0.0
    """Latest ``received_at`` (epoch seconds) applied: windows ending more than the grace
    period before it can take no more readings, and are dropped."""
    late: int = 0
    """Readings that arrived after their window's grace period (not in any rollup)."""
    positions: dict[str, tuple[int, int]] = {}


_encoder = msgspec.json.Encoder()
_status_decoder = msgspec.json.Decoder(StatusChange)
_state_decoder = msgspec.json.Decoder(DeviceState)
_rollup_decoder = msgspec.json.Decoder(Rollup)
_rollup_state_decoder = msgspec.json.Decoder(RollupState)


def encode(value: StatusChange | DeviceState | Rollup | RollupState) -> bytes:
    return _encoder.encode(value)


def decode_status_change(data: bytes) -> StatusChange:
    return _status_decoder.decode(data)


def decode_device_state(data: bytes) -> DeviceState:
    return _state_decoder.decode(data)


def decode_rollup(data: bytes) -> Rollup:
    return _rollup_decoder.decode(data)


def decode_rollup_state(data: bytes) -> RollupState:
    return _rollup_state_decoder.decode(data)

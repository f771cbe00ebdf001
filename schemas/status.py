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

Row sizes. A device names its own generic fields, so without a bound every name it ever sent
would stay in its status row (``last_values``) and in its rollup row (an aggregate per field and
window), until a changelog record passed the broker's message limit (1 MiB by default) and the
worker stopped on every retry. Each row therefore has bounds (``FLEET_STREAM__*``), and
:func:`status_row_max_bytes` and :func:`rollup_row_max_bytes` give the most bytes a row encodes
to under them; the settings refuse bounds that would let a row pass :data:`ROW_MAX_BYTES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "ROLLUP_MAX_FIELDS",
    "ROLLUP_MAX_WINDOWS",
    "ROLLUP_SLACK_S",
    "ROLLUP_WINDOW_S",
    "ROW_MAX_BYTES",
    "STATUS_MAX_VALUES",
    "DeviceState",
    "Rollup",
    "RollupState",
    "StatusChange",
    "decode_device_state",
    "decode_rollup",
    "decode_rollup_state",
    "decode_status_change",
    "encode",
    "rollup_row_max_bytes",
    "rollup_windows_needed",
    "status_row_max_bytes",
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
    """``"sensor.field"`` → latest value, the least recently updated first; at most
    ``FLEET_STREAM__STATUS_MAX_VALUES`` fields (past it, the least recently updated go)."""
    positions: dict[str, tuple[int, int]] = {}
    """Raw partition (as text) → (offset, index) of the last reading applied from it."""
    values_dropped: int = 0
    """Fields dropped from ``last_values`` to keep it within its bound (0 in rows written
    before the bound)."""


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
    dropped_fields: int = 0
    """Field values in no rollup because of the row's bounds: a window already held
    ``FLEET_STREAM__ROLLUP_MAX_FIELDS`` other fields, or the reading's window would have been
    the oldest of ``FLEET_STREAM__ROLLUP_MAX_WINDOWS`` (0 in rows written before the bounds)."""


_encoder = msgspec.json.Encoder()

ROLLUP_WINDOW_S: Final = 60
"""A rollup window's length: 1-minute tumbling windows."""
ROLLUP_SLACK_S: Final = 60
"""A window stays in its row this long after it stops taking readings, so a reading received
slightly out of order (two API instances) still finds it."""

STATUS_MAX_VALUES: Final = 128
"""Default of ``FLEET_STREAM__STATUS_MAX_VALUES``: twice what the most a reading can carry
(the catalogue's 17 fields and 48 generic ones) needs."""
ROLLUP_MAX_FIELDS: Final = 64
"""Default of ``FLEET_STREAM__ROLLUP_MAX_FIELDS``: above the most numeric fields one reading
carries (the catalogue's 12 and 48 generic ones)."""
ROLLUP_MAX_WINDOWS: Final = 24
"""Default of ``FLEET_STREAM__ROLLUP_MAX_WINDOWS``: the default grace period and the edge's
clock skew need 13 (:func:`rollup_windows_needed`)."""
ROW_MAX_BYTES: Final = 512 * 1024
"""The most bytes a status or rollup row may encode to under any accepted settings: half the
broker's default message limit (1 MiB), which a changelog record must stay under."""

# The largest JSON pieces rows are made of, as msgspec writes them.
_NAME_BYTES: Final = 32 + 1 + 32
"""``sensor.field``: a sensor type and a field name of 32 characters at most
(``schemas.catalogue.SENSOR_NAME_PATTERN``: ASCII, nothing escaped)."""
_NUMBER_BYTES: Final = 24
"""A finite float (``-2.2250738585072014e-308``), or an integer below 10**23 (a count is below
2**63; readings' integers are the catalogue's, 100000 at most, and their window sums)."""
_VALUE_BYTES: Final = 2 + _NAME_BYTES + 1 + _NUMBER_BYTES + 1
"""``"name":value,`` in ``last_values`` (a boolean is shorter than a number)."""
_AGGREGATE_BYTES: Final = 2 + _NAME_BYTES + 1 + 2 + 4 * _NUMBER_BYTES + 3 + 1
"""``"name":[count,min,max,sum],`` in a rollup window."""
_WINDOW_BYTES: Final = 2 + 12 + 1 + 2 + 1
"""``"start":{},`` around a window's aggregates (epoch seconds: 12 digits to the year 9999)."""
_POSITION_BYTES: Final = 2 + 10 + 1 + 2 + 19 + 1 + 19 + 1
"""``"partition":[offset,index],`` (an int32 partition, int64 offset and index)."""

_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
_BIG = 2**63 - 1


def _status_fixed_bytes() -> int:
    """The longest status row with empty ``last_values`` and ``positions``."""
    state = DeviceState(
        device_id="x" * 128,  # schemas.readings.DEVICE_ID_PATTERN: 128 ASCII characters at most
        first_seen=_LATEST,
        last_seen=_LATEST,
        last_ts=_LATEST,
        last_event_id="0" * 36,
        count=_BIG,
        online=False,
        seq=_BIG,
        changed_at=_LATEST,
        values_dropped=_BIG,
    )
    return len(_encoder.encode(state))


def _rollup_fixed_bytes() -> int:
    """The longest rollup row with empty ``windows`` and ``positions``."""
    state = RollupState(
        device_id="x" * 128,
        newest_received=-2.2250738585072014e-308,  # the longest float msgspec writes
        late=_BIG,
        dropped_fields=_BIG,
    )
    return len(_encoder.encode(state))


_STATUS_FIXED_BYTES: Final = _status_fixed_bytes()
_ROLLUP_FIXED_BYTES: Final = _rollup_fixed_bytes()


def status_row_max_bytes(max_values: int, partitions: int) -> int:
    """The most bytes a status row encodes to with at most ``max_values`` last values
    (``FLEET_STREAM__STATUS_MAX_VALUES``) and positions in ``partitions`` raw partitions
    (``FLEET_KAFKA__PARTITIONS``)::

        fixed + max_values * 93 + partitions * 55

    fixed (the longest row without values or positions) is 505 bytes; 93 is
    ``"name":value,`` with a 65-character name and a 24-byte number; 55 is
    ``"partition":[offset,index],``. The defaults (128 values, 8 partitions): 12,849 bytes.
    """
    return _STATUS_FIXED_BYTES + max_values * _VALUE_BYTES + partitions * _POSITION_BYTES


def rollup_row_max_bytes(max_windows: int, max_fields: int, partitions: int) -> int:
    """The most bytes a rollup row encodes to with at most ``max_windows`` windows of at most
    ``max_fields`` fields (``FLEET_STREAM__ROLLUP_MAX_WINDOWS`` and ``__ROLLUP_MAX_FIELDS``) and
    positions in ``partitions`` raw partitions (``FLEET_KAFKA__PARTITIONS``)::

        fixed + max_windows * (18 + max_fields * 170) + partitions * 55

    fixed (the longest row without windows or positions) is 279 bytes; 18 is ``"start":{},``;
    170 is ``"name":[count,min,max,sum],`` with a 65-character name and four 24-byte numbers;
    55 is ``"partition":[offset,index],``. The defaults (24 windows of 64 fields, 8 partitions):
    262,271 bytes.
    """
    per_window = _WINDOW_BYTES + max_fields * _AGGREGATE_BYTES
    return _ROLLUP_FIXED_BYTES + max_windows * per_window + partitions * _POSITION_BYTES


def rollup_windows_needed(grace_s: int, max_ahead_s: int) -> int:
    """Windows a device's row holds at most while its readings stay within the edge's clock
    skew (``max_ahead_s`` ahead of their receive time): a window stays until its grace period
    and the slack after it end (:data:`ROLLUP_SLACK_S`), so with the newest one they span
    ``ROLLUP_WINDOW_S + grace_s + ROLLUP_SLACK_S + max_ahead_s`` seconds of window starts."""
    span = ROLLUP_WINDOW_S + grace_s + ROLLUP_SLACK_S + max_ahead_s
    return span // ROLLUP_WINDOW_S + 1


_status_decoder = msgspec.json.Decoder(StatusChange)
_state_decoder = msgspec.json.Decoder(DeviceState)
_rollup_decoder = msgspec.json.Decoder(Rollup)
_rollup_state_decoder = msgspec.json.Decoder(RollupState)


def newest_rollups(rollups: Sequence[Rollup]) -> list[Rollup]:
    """One rollup per (device, field, window): the one with the highest count (one upsert may
    not touch a row twice, and a higher count is the newer aggregate)."""
    best: dict[tuple[str, str, datetime], Rollup] = {}
    for rollup in rollups:
        key = (rollup.device_id, rollup.field, rollup.window_start)
        current = best.get(key)
        if current is None or rollup.count > current.count:
            best[key] = rollup
    return list(best.values())


def encode(value: StatusChange | DeviceState | Rollup | RollupState) -> bytes:
    return _encoder.encode(value)


def decode_status_change(data: bytes) -> StatusChange:
    return _status_decoder.decode(data)


def decode_device_state(data: bytes) -> DeviceState:
    return _state_decoder.decode(data)


class _Online(msgspec.Struct):
    online: bool = False


_online_decoder = msgspec.json.Decoder(_Online)


def state_is_online(data: bytes) -> bool:
    """A device state's ``online`` alone: ~10x cheaper than decoding it whole, for counts over
    every device of a fleet."""
    return _online_decoder.decode(data).online


def decode_rollup(data: bytes) -> Rollup:
    return _rollup_decoder.decode(data)


def decode_rollup_state(data: bytes) -> RollupState:
    return _rollup_state_decoder.decode(data)

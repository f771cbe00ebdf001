"""The worker's job on one raw envelope at a time, as the Quix Streams peer does it
(``bench.baselines.quix_same_job``): plain functions over our ``schemas``, no Quix, so they run
(and are unit-tested) in both virtualenvs.

Per envelope: decode it (``schemas.envelopes``), validate and curate each reading with the
device's enrichment (``schemas.events.validate_event_with_sensors`` and ``agents.enrichment``:
the worker's own rules and policies), and update, in a key-value state (Quix's ``State``; a
dict in the tests), each device's status (first/last seen, count, last event, last value per
field, the online transition) and its 1-minute rollup windows (count, min, max, sum per field,
late by ``received_at`` as the worker decides). What comes out is what the worker's outputs
carry: ``fleet.readings.v1`` records, dead letters, ``readings`` rows, each device's Redis
fields, status transitions and rollup records (a device's touched windows at most once per
``publish_interval_s``, as the worker's ticks do).

State values are JSON (Quix's default serializer): times are epoch seconds, window starts text.
Left out against the worker (said in the bench notes): the bounds of a state row (at most
``STATUS_MAX_VALUES`` last values are kept; window counts are not bounded), drop of repeats by
raw position after a crash, and the offline timer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from agents.enrichment import Enricher
from schemas.envelopes import decode_raw_record, single_item_envelope
from schemas.events import (
    CuratedReading,
    dead_letter_for,
    encode_curated,
    encode_dead_letter,
    validate_event_with_sensors,
)
from schemas.status import STATUS_MAX_VALUES, Rollup, StatusChange

WINDOW_S = 60
STAGE = "validate"

_json = msgspec.json.Encoder()
_sensors = msgspec.json.Decoder(dict[str, Any])


class KeyValue(Protocol):
    """What the job needs of Quix's ``State``: get and set of JSON values by key."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class Rules:
    """The worker's defaults (``FLEET_STREAM__*``)."""

    grace_s: int = 300
    timeout_s: int = 300
    max_values: int = STATUS_MAX_VALUES
    publish_interval_s: float = 30.0


@dataclass
class DeviceFields:
    """One device's Redis fields from one envelope (``connectors.redis.keys``' layout)."""

    latest: dict[str, str | bytes]
    status: dict[str, str | bytes]
    items: list[bytes] = field(default_factory=list)


@dataclass
class Outputs:
    """What one envelope gives each output."""

    readings: list[tuple[bytes, bytes]] = field(default_factory=list)
    """``fleet.readings.v1`` (key device_id, curated JSON)."""
    dead: list[bytes] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    """``readings`` rows as COPY lines (:func:`copy_line`)."""
    devices: dict[str, DeviceFields] = field(default_factory=dict)
    changes: list[StatusChange] = field(default_factory=list)
    rollups: list[Rollup] = field(default_factory=list)


@dataclass(frozen=True)
class Reading:
    """What status and rollups read of a curated reading."""

    event_id: str
    ts: float
    received_at: float
    fields: list[tuple[str, Any]]
    """``("sensor.field", value)`` of the reading (:func:`flattened`)."""


def process(
    value: bytes,
    *,
    topic: str,
    partition: int,
    offset: int,
    now: datetime,
    wall: float,
    state: KeyValue,
    enricher: Enricher,
    rules: Rules = Rules(),
) -> Outputs:
    """One raw record through the whole job; ``now`` the worker clock, ``wall`` its seconds."""
    out = Outputs()
    record = decode_raw_record(
        value, record_id=f"{topic}/{partition}/{offset}", record_time=now, format_header=None
    )

    def letter(exc: Exception, original: bytes, key: str | None, item: int | None) -> bytes:
        dead = dead_letter_for(
            exc,
            stage=STAGE,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            original=original,
            failed_at=now,
            item=item,
        )
        return encode_dead_letter(dead)

    for failure in record.failures:
        out.dead.append(letter(failure.error, failure.original, None, failure.index))
    by_device: dict[str, list[tuple[CuratedReading, bytes, Reading]]] = {}
    for event in record.events:
        try:
            curated = validate_event_with_sensors(
                event, now=now, enrichment=enricher.enrichment(event.device_id)
            ).curated
        except Exception as exc:  # noqa: BLE001 - a dead letter, whatever went wrong (as ours)
            out.dead.append(letter(exc, single_item_envelope(event), event.device_id, None))
            continue
        encoded = encode_curated(curated)
        sensors = _sensors.decode(curated.sensors)
        reading = Reading(
            curated.event_id,
            curated.ts.timestamp(),
            curated.received_at.timestamp(),
            flattened(sensors),
        )
        out.readings.append((curated.device_id.encode(), encoded))
        out.rows.append(copy_line(curated, sorted(sensors)))
        by_device.setdefault(curated.device_id, []).append((curated, encoded, reading))
    for device_id, readings in by_device.items():
        just = [reading for _, _, reading in readings]
        status_key, rollup_key = f"s:{device_id}", f"r:{device_id}"
        status, change = apply_status(state.get(status_key), device_id, just, now, rules)
        state.set(status_key, status)
        rollup, rollups = apply_rollups(state.get(rollup_key), device_id, just, wall, rules)
        state.set(rollup_key, rollup)
        if change is not None:
            out.changes.append(change)
        out.rollups += rollups
        out.devices[device_id] = redis_fields(device_id, status, readings)
    return out


def apply_status(
    state: dict[str, Any] | None,
    device_id: str,
    readings: Sequence[Reading],
    now: datetime,
    rules: Rules = Rules(),
) -> tuple[dict[str, Any], StatusChange | None]:
    """A device's status after ``readings`` (in order), and its online transition if any: the
    rules of ``agents.status.StatusTracker.apply``."""
    first = readings[0]
    if state is None:
        state = {
            "first_seen": first.received_at,
            "last_seen": first.received_at,
            "last_ts": first.ts,
            "count": 0,
            "online": False,
            "seq": 0,
            "values": {},
        }
    values: dict[str, Any] = state["values"]
    for reading in readings:
        state["last_seen"] = max(state["last_seen"], reading.received_at)
        state["first_seen"] = min(state["first_seen"], reading.received_at)
        state["last_ts"] = max(state["last_ts"], reading.ts)
        for name, value in reading.fields:
            values.pop(name, None)  # least recently updated first
            values[name] = value
    for name in list(values)[: max(len(values) - rules.max_values, 0)]:
        del values[name]
    state["count"] += len(readings)
    state["last_event_id"] = readings[-1].event_id
    if state["online"] or now.timestamp() - state["last_seen"] >= rules.timeout_s:
        return state, None
    state["online"], state["seq"], state["changed_at"] = True, state["seq"] + 1, first.received_at
    change = StatusChange(
        device_id=device_id,
        seq=state["seq"],
        online=True,
        reason="reading",
        changed_at=_time(first.received_at),
        last_seen=_time(first.received_at),
        timeout_s=rules.timeout_s,
    )
    return state, change


def flattened(sensors: dict[str, Any]) -> list[tuple[str, Any]]:
    """``("sensor.field", value)`` of every field of every sensor object."""
    return [
        (f"{sensor}.{name}", value)
        for sensor, fields in sensors.items()
        if isinstance(fields, dict)
        for name, value in fields.items()
    ]


def apply_rollups(
    state: dict[str, Any] | None,
    device_id: str,
    readings: Sequence[Reading],
    wall: float,
    rules: Rules = Rules(),
) -> tuple[dict[str, Any], list[Rollup]]:
    """A device's windows after ``readings``, and the rollups of its windows touched since it
    last published, when ``publish_interval_s`` has passed (``wall``: seconds, the worker's
    clock). A reading received more than ``grace_s`` after its window ended is late (counted,
    in no window), as in ``agents.rollups``; windows that can take no more readings go."""
    if state is None:
        state = {"windows": {}, "newest": 0.0, "late": 0, "touched": [], "published": wall}
    windows: dict[str, dict[str, list[float]]] = state["windows"]
    touched = set(state["touched"])
    for reading in readings:
        start = math.floor(reading.ts / WINDOW_S) * WINDOW_S
        if reading.received_at > start + WINDOW_S + rules.grace_s:
            state["late"] += 1
            continue
        state["newest"] = max(state["newest"], reading.received_at)
        add_values(windows.setdefault(str(start), {}), reading.fields)
        touched.add(str(start))
    rollups: list[Rollup] = []
    if touched and wall - state["published"] >= rules.publish_interval_s:
        for key in sorted(touched, key=int):
            for name, aggregate in sorted(windows.get(key, {}).items()):
                rollups.append(rollup_of(device_id, int(key), name, aggregate))
        touched.clear()
        state["published"] = wall
    horizon = state["newest"] - WINDOW_S - rules.grace_s - WINDOW_S
    for key in [key for key in windows if int(key) < horizon]:
        del windows[key]
    state["touched"] = sorted(touched)
    return state, rollups


def add_values(window: dict[str, list[float]], fields: list[tuple[str, Any]]) -> None:
    """A reading's numeric fields into a window's aggregates [count, min, max, sum]."""
    for name, value in fields:
        if value.__class__ is not int and value.__class__ is not float:
            continue  # numbers only: booleans are not rolled up
        aggregate = window.get(name)
        if aggregate is None:
            window[name] = [1, value, value, value]
        else:
            aggregate[0] += 1
            aggregate[1] = min(aggregate[1], value)
            aggregate[2] = max(aggregate[2], value)
            aggregate[3] += value


def rollup_of(device_id: str, start: int, name: str, aggregate: list[float]) -> Rollup:
    count, low, high, total = aggregate
    return Rollup(
        device_id=device_id,
        field=name,
        window_start=_time(start),
        window_end=_time(start + WINDOW_S),
        count=int(count),
        min=float(low),  # the aggregates keep a reading's ints; Postgres takes float8 arrays
        max=float(high),
        sum=float(total),
        mean=total / count,
    )


def redis_fields(
    device_id: str, status: dict[str, Any], readings: Sequence[tuple[CuratedReading, bytes, Any]]
) -> DeviceFields:
    """The latest hash (the newest reading by ``ts``) and the status hash's reading fields."""
    newest, encoded, _ = max(readings, key=lambda r: r[0].ts)
    latest: dict[str, str | bytes] = {
        "event_id": newest.event_id,
        "ts": newest.ts.isoformat(),
        "received_at": newest.received_at.isoformat(),
        "reading": encoded,
    }
    fields: dict[str, str | bytes] = {
        "device_id": device_id,
        "last_seen": _time(status["last_seen"]).isoformat(),
        "last_event_id": status["last_event_id"],
    }
    for _, _, reading in readings:
        for name, value in reading.fields:
            fields[f"v:{name}"] = _json.encode(value)
    return DeviceFields(latest, fields, [encoded for _, encoded, _ in readings])


def copy_line(curated: CuratedReading, sensor_types: Sequence[str]) -> bytes:
    """The reading's ``readings`` row in the CSV form our sink COPYs (delimiter 0x02, quote
    0x01: ``connectors.postgres.readings.copy_line``; the readings are validated, so their
    text holds no control character)."""
    types = '{"' + '","'.join(sensor_types) + '"}' if sensor_types else "{}"
    head = "\x02".join(
        (
            curated.event_id,
            curated.device_id,
            curated.ts.isoformat(),
            curated.received_at.isoformat(),
            curated.source,
            types,
        )
    )
    metadata = b"" if curated.metadata is None else _json.encode(curated.metadata)
    return b"%s\x02%s\x02%s\n" % (head.encode(), bytes(curated.sensors), metadata)


def merge_devices(batch: Sequence[dict[str, DeviceFields]]) -> dict[str, DeviceFields]:
    """A checkpoint's Redis fields per device: later envelopes' fields win, items add up."""
    merged: dict[str, DeviceFields] = {}
    for devices in batch:
        for device_id, fields in devices.items():
            into = merged.get(device_id)
            if into is None:
                merged[device_id] = DeviceFields(
                    dict(fields.latest), dict(fields.status), list(fields.items)
                )
            else:
                into.latest = fields.latest
                into.status.update(fields.status)
                into.items += fields.items
    return merged


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)

"""Benchmark readings: a realistic mix of the seed sensor types, and their Kafka records.

Devices are of two kinds, as in the seeds: ESP32 boards (seed 002: LD2410 radar, PIR, MQ134
gas; not every board has every sensor) and industrial machines (seed 001: ``equipment`` with
temperature, vibration, pressure, humidity, rpm, power). About 1 % of the readings are
invalid for a reason the validator must catch (out of range, unknown sensor or field, no
sensor): they are valid JSON, as an edge that skipped validation (a third-party producer, MQTT)
could send them, and must end as dead letters.

Everything is deterministic for a given seed, except device ids and event ids (fresh per run, so
runs never share rows).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from connectors.kafka.partitioner import partition_for
from schemas.envelopes import encode_item
from schemas.events import RawEvent, new_event_id

INVALID_EVERY = 100
"""One reading in this many is invalid (~1 %)."""
EQUIPMENT_SHARE = 0.3
"""Share of the devices that are industrial machines (the rest are ESP32 boards)."""
SPAN_S = 60.0
"""Readings of a run carry timestamps over the last minute (see ``readings``)."""

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Fleet:
    """The devices of one run: ids unique to the run, so its rows can be found and deleted."""

    run: str
    esp32: list[str]
    equipment: list[str]

    @property
    def devices(self) -> list[str]:
        return self.esp32 + self.equipment

    @property
    def prefix(self) -> str:
        """Every device id of the run starts with this."""
        return f"b{self.run}-"


def new_fleet(devices: int, run: str | None = None) -> Fleet:
    """``devices`` device ids, ~30 % of them machines, all starting with :attr:`Fleet.prefix`."""
    run = run or uuid.uuid4().hex[:8]
    machines = round(devices * EQUIPMENT_SHARE)
    esp32 = [f"b{run}-esp32-{n:05d}" for n in range(devices - machines)]
    equipment = [f"b{run}-machine-{n:05d}" for n in range(machines)]
    return Fleet(run, esp32, equipment)


def _esp32_sensors(rng: random.Random) -> dict[str, Any]:
    presence = rng.random() < 0.4
    sensors: dict[str, Any] = {
        "ld2410": {
            "presence": presence,
            "moving_target": presence and rng.random() < 0.5,
            "stationary_target": presence,
            "distance_cm": rng.randint(30, 600),
            "moving_energy": rng.randint(0, 100),
            "stationary_energy": rng.randint(0, 100),
        },
        "pir": {"motion_detected": rng.random() < 0.3},
    }
    if rng.random() < 0.7:  # not every board carries the gas sensor
        sensors["mq134"] = {
            "gas_concentration": round(rng.uniform(5, 80), 2),
            "raw_value": rng.randint(200, 1800),
        }
    return sensors


def _equipment_sensors(rng: random.Random) -> dict[str, Any]:
    return {
        "equipment": {
            "temperature": round(rng.uniform(20, 95), 2),
            "vibration": round(rng.uniform(0.1, 12), 3),
            "pressure": round(rng.uniform(1, 12), 3),
            "humidity": round(rng.uniform(20, 70), 1),
            "rpm": round(rng.uniform(800, 3600), 1),
            "power_kw": round(rng.uniform(1, 75), 2),
        }
    }


_INVALID_KINDS = ("temperature_range", "distance_range", "unknown_sensor", "no_sensor")


def _invalid_sensors(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "temperature_range":
        return {"equipment": {"temperature": 450.0, "vibration": 3.2}}
    if kind == "distance_range":
        return {"ld2410": {"presence": True, "distance_cm": 950}}
    if kind == "unknown_sensor":
        return {**_esp32_sensors(rng), "bme280": {"temperature": 21.5}}
    return {}


def readings(
    fleet: Fleet,
    count: int,
    *,
    seed: int = 1,
    invalid_every: int | None = INVALID_EVERY,
    now: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    span_s: float = SPAN_S,
) -> Iterator[dict[str, Any]]:
    """``count`` readings round-robin over the fleet, every ``invalid_every``-th one invalid
    (None: all valid, as the HTTP scenarios need: one invalid item rejects a whole request).

    Timestamps fall in the ``span_s`` seconds before ``now``, in order, as a live fleet sends
    them: on time for the 1-minute rollups (which then do their whole work: an older reading
    would be late and skip them) and inside the clock-skew check.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    devices = fleet.devices
    machines = set(fleet.equipment)
    for n in range(count):
        device = devices[n % len(devices)]
        if is_invalid(n, len(devices), invalid_every):
            sensors = _invalid_sensors(rng, _INVALID_KINDS[(n // len(devices)) % 4])
        elif device in machines:
            sensors = _equipment_sensors(rng)
        else:
            sensors = _esp32_sensors(rng)
        timestamp = now - timedelta(seconds=span_s * (count - n) / max(count, 1))
        body: dict[str, Any] = {
            "device_id": device,
            "timestamp": timestamp.isoformat(),
            "sensors": sensors,
        }
        if metadata:
            body["metadata"] = metadata
        yield body


def is_invalid(n: int, devices: int, invalid_every: int | None) -> bool:
    """Whether reading ``n`` is made invalid: one in ``invalid_every``, spread so that every
    device sends some (reading n goes to device n mod ``devices``; the offset moves with each
    round over the fleet)."""
    if not invalid_every:
        return False
    return (n + n // devices) % invalid_every == invalid_every - 1


def invalid_count(count: int, devices: int, invalid_every: int | None = INVALID_EVERY) -> int:
    """How many of ``readings(fleet, count, invalid_every=...)`` are invalid."""
    return sum(1 for n in range(count) if is_invalid(n, devices, invalid_every))


def raw_event(body: dict[str, Any], received_at: datetime) -> RawEvent:
    """The raw event an edge would produce for ``body`` (its JSON kept verbatim)."""
    return RawEvent(
        event_id=new_event_id(),
        device_id=str(body["device_id"]),
        received_at=received_at,
        source="http",
        payload=msgspec.Raw(_encoder.encode(body)),
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """One ``fleet.raw.v1`` record: encoded items that all belong to ``partition``."""

    partition: int
    items: list[bytes]


def group_envelopes(
    items: Iterable[tuple[str, bytes]],
    partitions: int,
    *,
    max_items: int,
    max_bytes: int = 512 * 1024,
) -> Iterator[Envelope]:
    """Group ``(device_id, encoded item)`` pairs into partition-aligned envelopes.

    Each item goes to the partition Kafka's default partitioner gives its device_id; an
    envelope is emitted when it holds ``max_items`` items or would exceed ``max_bytes``, the
    rest at the end. Items keep their order within a partition (so within a device).
    """
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    open_: dict[int, list[bytes]] = {}
    sizes: dict[int, int] = {}
    for device_id, item in items:
        partition = partition_for(device_id, partitions)
        pending = open_.setdefault(partition, [])
        if pending and sizes[partition] + len(item) + 1 > max_bytes:
            yield Envelope(partition, pending)
            pending = open_[partition] = []
        if not pending:
            sizes[partition] = 0
        pending.append(item)
        sizes[partition] += len(item) + 1
        if len(pending) >= max_items:
            yield Envelope(partition, pending)
            open_[partition] = []
    for partition, pending in open_.items():
        if pending:
            yield Envelope(partition, pending)


def encoded_items(
    bodies: Iterable[dict[str, Any]], received_at: datetime
) -> Iterator[tuple[str, bytes]]:
    """``(device_id, item bytes)`` for each reading, as the edge encodes them."""
    for body in bodies:
        event = raw_event(body, received_at)
        yield event.device_id, encode_item(event)


def request_bodies(bodies: Sequence[dict[str, Any]], batch: int) -> list[bytes]:
    """JSON request bodies of ``batch`` readings (a single object when ``batch`` is 1)."""
    if batch == 1:
        return [_encoder.encode(body) for body in bodies]
    return [_encoder.encode(list(bodies[i : i + batch])) for i in range(0, len(bodies), batch)]

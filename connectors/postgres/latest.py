"""The latest readings of one device, read from ``readings`` (seed 001's "latest" query).

Both queries walk the ``(device_id, ts DESC)`` index of the day partitions from the newest row
and stop early: the ``limit`` newest readings, and the newest value of each sensor type among
the device's last :data:`SENSOR_LOOKBACK` readings (a sensor the device stopped reporting
longer ago than that is not listed), so no request scans a device's whole history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

SENSOR_LOOKBACK = 10_000

_RECENT = """
SELECT event_id::text AS event_id, ts, received_at, sensors::text AS sensors
FROM readings WHERE device_id = $1 ORDER BY ts DESC LIMIT $2
"""
_PER_SENSOR = f"""
WITH recent AS (
    SELECT event_id, ts, sensors, sensor_types FROM readings
    WHERE device_id = $1 ORDER BY ts DESC LIMIT {SENSOR_LOOKBACK}
)
SELECT DISTINCT ON (sensor) sensor, event_id::text AS event_id, ts,
       (sensors -> sensor)::text AS value
FROM recent, unnest(sensor_types) AS sensor
ORDER BY sensor, ts DESC
"""  # noqa: S608 - a module constant, no input


@dataclass(frozen=True)
class StoredReading:
    event_id: str
    ts: datetime
    received_at: datetime
    sensors: dict[str, Any]


@dataclass(frozen=True)
class SensorValue:
    event_id: str
    ts: datetime
    values: Any


async def recent_readings(pool: asyncpg.Pool, device_id: str, limit: int) -> list[StoredReading]:
    rows = await pool.fetch(_RECENT, device_id, limit)
    return [
        StoredReading(
            row["event_id"], row["ts"], row["received_at"], msgspec.json.decode(row["sensors"])
        )
        for row in rows
    ]


async def latest_per_sensor(pool: asyncpg.Pool, device_id: str) -> dict[str, SensorValue]:
    rows = await pool.fetch(_PER_SENSOR, device_id)
    return {
        row["sensor"]: SensorValue(row["event_id"], row["ts"], msgspec.json.decode(row["value"]))
        for row in rows
        if row["value"] is not None
    }

"""Seed-002 style readings for tests and benchmarks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from schemas.events import RawEvent, Source, new_event_id
from schemas.status import StatusChange
from tests import clock


def device_ids(count: int, prefix: str = "esp32") -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{prefix}-{run}-{n:03d}" for n in range(count)]


def reading(device_id: str, n: int = 0, sensors: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid reading with all three ESP32 sensors, unless ``sensors`` says otherwise."""
    default = {
        "ld2410": {"presence": n % 2 == 0, "distance_cm": 50 + n % 300, "moving_energy": n % 100},
        "pir": {"motion_detected": n % 3 == 0},
        "mq134": {"gas_concentration": 10.0 + (n % 50) / 4},
    }
    return {
        "device_id": device_id,
        "timestamp": (clock.base_time() + timedelta(seconds=n)).isoformat(),
        "sensors": sensors or default,
    }


def raw_event(
    body: dict[str, Any],
    *,
    event_id: str | None = None,
    source: Source = "http",
    received_at: datetime | None = None,
) -> RawEvent:
    """The envelope the edge would put on ``fleet.raw.v1`` for the reading ``body``."""
    return RawEvent(
        event_id=event_id or new_event_id(),
        device_id=str(body["device_id"]),
        received_at=received_at or clock.now(),
        source=source,
        payload=msgspec.Raw(msgspec.json.encode(body)),
    )


def status_change(device_id: str, seq: int, at: datetime, *, timeout_s: int = 60) -> StatusChange:
    """A status transition as the status agent publishes it: odd ``seq`` online (a reading),
    even offline (a timeout)."""
    online = seq % 2 == 1
    return StatusChange(
        device_id=device_id,
        seq=seq,
        online=online,
        reason="reading" if online else "timeout",
        changed_at=at,
        last_seen=at,
        timeout_s=timeout_s,
    )


def gas_alert_rule(name: str, device_id: str) -> dict[str, Any]:
    """A flow of one alert node: critical when ``device_id``'s gas concentration passes 500."""
    return {
        "name": name,
        "match": {"devices": [device_id], "sensors": ["mq134"]},
        "nodes": [
            {
                "id": "high",
                "type": "alert",
                "condition": "sensors.mq134.gas_concentration > 500.0",
                "value": "sensors.mq134.gas_concentration",
                "severity": "critical",
                "message": "gas ${value} ppm on ${device.id}",
            }
        ],
    }

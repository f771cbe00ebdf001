"""What one simulation does: how many devices, how they behave, and the bounds of the run.

A plan is data only; :mod:`cli.simulator.schedule` turns it into each device's sends, and every
random choice there comes from ``random.Random`` seeded by ``seed`` (never the global one), so
one seed gives the same fleet and the same schedule on every run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from schemas.readings import DEVICE_ID_PATTERN

IMPORT_CHUNK = 10_000
"""Devices per bulk-import request (the admin route takes at most this many)."""


class PlanError(ValueError):
    """A plan that cannot run (bounds, shares); the message names the field."""


@dataclass(frozen=True)
class Plan:
    """A bounded simulation: ``duration_s`` and/or ``readings`` end it, whichever comes first."""

    devices: int = 100
    duration_s: float | None = 30.0
    readings: int | None = None
    """Readings of the whole fleet, spread evenly over the devices (the first get one more)."""
    seed: int = 1
    prefix: str = "sim"
    rate_per_s: float = 0.2
    """Readings a second per device, on average (outside bursts)."""
    jitter: float = 0.2
    """Each interval is ``1/rate`` times a factor drawn from [1 - jitter, 1 + jitter]."""
    mqtt_share: float = 0.5
    """Share of devices that publish over MQTT (through the MQTT front); the rest use HTTP."""
    http_batch: int = 1
    """Readings per HTTP request: 1 is the seeds' firmware (``POST /api/v1/sensor-data``),
    more posts a JSON array to ``/v1/readings``."""
    burst_share: float = 0.0
    burst_size: int = 10
    burst_every_s: float = 20.0
    offline_share: float = 0.0
    """Share of devices that go offline once (MQTT: disconnect) and come back later, sending
    what they measured meanwhile with its own timestamps."""
    offline_s: float = 10.0
    skew_s: float = 2.0
    """Each device's clock is off by a fixed amount drawn from [-skew_s, +skew_s]."""
    bad_share: float = 0.0
    """Share of misbehaving devices: malformed payloads, out-of-range values or a wrong token."""
    http_concurrency: int = 64
    """HTTP requests in flight at once, over all devices."""
    mqtt_max_connections: int = 20_000
    """Most MQTT connections one run opens (one per MQTT device: client id = device id)."""
    mqtt_connects_at_once: int = 64
    retries: int = 2
    """Retries of a reading answered 429/503 (same event id, after Retry-After)."""
    request_timeout_s: float = 30.0
    register: bool = True
    check: bool = True
    check_timeout_s: float = 60.0
    """How long acked readings may take to show up in Postgres before they count as missing."""
    registry_wait_s: float = 60.0
    """How long the API and the MQTT front may take to learn newly registered devices."""
    state_dir: Path | None = None
    """Where the devices' tokens are kept (None: ``<stack home>/simulate``)."""
    run_id: str | None = None
    """Scopes the event ids (None: a fresh one per run, so a rerun with the same seed is
    checked against its own readings, not the previous run's rows)."""

    def __post_init__(self) -> None:
        _positive("devices", self.devices)
        if not re.match(DEVICE_ID_PATTERN, self.device_id(self.devices - 1)):
            raise PlanError(f"prefix {self.prefix!r} makes device ids the registry refuses")
        if self.duration_s is None and self.readings is None:
            raise PlanError("duration_s or readings: at least one bounds the run")
        if self.duration_s is not None:
            _positive("duration_s", self.duration_s)
        if self.readings is not None:
            _positive("readings", self.readings)
        for name in ("rate_per_s", "burst_every_s", "request_timeout_s", "check_timeout_s"):
            _positive(name, getattr(self, name))
        for name in ("http_batch", "burst_size", "http_concurrency", "mqtt_connects_at_once"):
            _positive(name, getattr(self, name))
        for name in ("mqtt_share", "burst_share", "offline_share", "bad_share", "jitter"):
            _share(name, getattr(self, name))
        if self.jitter >= 1:
            raise PlanError("jitter must be below 1 (an interval must stay positive)")
        if self.offline_s < 0 or self.skew_s < 0 or self.retries < 0:
            raise PlanError("offline_s, skew_s and retries must be >= 0")
        self._check_connections()

    def _check_connections(self) -> None:
        if self.mqtt_devices > self.mqtt_max_connections:
            raise PlanError(
                f"mqtt_share gives {self.mqtt_devices} MQTT devices, more than "
                f"mqtt_max_connections={self.mqtt_max_connections}"
            )

    @property
    def mqtt_devices(self) -> int:
        return round(self.devices * self.mqtt_share)

    def device_readings(self, index: int) -> float:
        """How many readings device ``index`` sends at most (inf: only the duration bounds)."""
        if self.readings is None:
            return math.inf
        share, extra = divmod(self.readings, self.devices)
        return share + (1 if index < extra else 0)

    def device_id(self, index: int) -> str:
        return f"{self.prefix}-{self.seed}-{index:07d}"


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise PlanError(f"{name} must be > 0 (got {value})")


def _share(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise PlanError(f"{name} must be within 0..1 (got {value})")

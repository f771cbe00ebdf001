"""Counts of one run as it goes (what the progress line shows) and the summary at its end.

``sent`` counts readings (each once, however often it was retried), ``acked`` those that got a
2xx or a successful PUBACK, ``failed`` those that never did; ``errors`` counts every answer that
was not a success by its status (``http 503``, ``puback 0x99``, ``connack 0x86``, ``timeout``,
...), retries included, so it says what the devices saw.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Acked:
    device_id: str
    event_id: str
    sent_at: float
    """Wall-clock seconds (epoch) when the acked attempt was sent."""
    ack_s: float
    """Seconds from that send to its answer."""


@dataclass
class Tally:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    bad_sent: int = 0
    bad_acked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    acked_readings: list[Acked] = field(default_factory=list)

    def sending(self, count: int, bad: int) -> None:
        self.sent += count
        self.bad_sent += bad

    def ack(self, readings: Sequence[Acked], bad: int) -> None:
        self.acked += len(readings)
        self.bad_acked += bad
        self.acked_readings.extend(readings)

    def error(self, status: str, readings: int = 1) -> None:
        self.errors[status] += readings

    def fail(self, count: int) -> None:
        self.failed += count


@dataclass(frozen=True)
class StorageCheck:
    """What Postgres holds of the acked readings."""

    looked_for: int
    stored: int
    waited_s: float
    row_latencies_s: list[float]
    """Per stored reading: its row's ``ingested_at`` minus when it was sent."""

    @property
    def missing(self) -> int:
        return self.looked_for - self.stored


@dataclass(frozen=True)
class Summary:
    run_id: str
    seed: int
    devices: int
    http_devices: int
    mqtt_devices: int
    setup_s: float
    """Registering, waiting for the registry, connecting the MQTT devices."""
    elapsed_s: float
    """The sending stage, drain included."""
    sent: int
    acked: int
    failed: int
    bad_sent: int
    bad_acked: int
    errors: dict[str, int]
    acked_per_s: float
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    checked: bool
    stored: int | None
    missing: int | None
    check_waited_s: float | None
    row_p50_ms: float | None
    row_p99_ms: float | None

    @property
    def ok(self) -> bool:
        """True when no acked reading is missing from Postgres (or nothing was checked)."""
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass(frozen=True)
class Fleet:
    run_id: str
    seed: int
    http_devices: int
    mqtt_devices: int


def summarize(
    fleet: Fleet,
    tally: Tally,
    elapsed_s: float,
    check: StorageCheck | None,
    setup_s: float = 0.0,
) -> Summary:
    acks = [reading.ack_s for reading in tally.acked_readings]
    rows = check.row_latencies_s if check is not None else []
    return Summary(
        run_id=fleet.run_id,
        seed=fleet.seed,
        devices=fleet.http_devices + fleet.mqtt_devices,
        http_devices=fleet.http_devices,
        mqtt_devices=fleet.mqtt_devices,
        setup_s=round(setup_s, 2),
        elapsed_s=round(elapsed_s, 2),
        sent=tally.sent,
        acked=tally.acked,
        failed=tally.failed,
        bad_sent=tally.bad_sent,
        bad_acked=tally.bad_acked,
        errors=dict(sorted(tally.errors.items())),
        acked_per_s=round(tally.acked / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        ack_p50_ms=_ms(percentile(acks, 50)),
        ack_p99_ms=_ms(percentile(acks, 99)),
        checked=check is not None,
        stored=None if check is None else check.stored,
        missing=None if check is None else check.missing,
        check_waited_s=None if check is None else round(check.waited_s, 2),
        row_p50_ms=_ms(percentile(rows, 50)),
        row_p99_ms=_ms(percentile(rows, 99)),
    )

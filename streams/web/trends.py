"""The last hour of one worker, for the trends page: a ring buffer sampled every
:data:`SAMPLE_S` seconds, in memory only (a restarted worker starts a new history).

Each :class:`TrendPoint` holds what changed since the previous sample: readings in and out per
second (as the overview counts them: what ``validate`` produced to the readings and dead-letter
topics), dead letters per second (every stage), the reading → row latency's p50 and p99 over
the interval (bucket upper bounds of ``fleet_reading_to_row_seconds``), and at the sample time
the app's consumer lag (all groups; ``None`` when Kafka did not answer) and this worker's
devices online and offline. Nothing here reads a clock: callers pass the times.

The page asks every worker for its points and adds them up per :data:`SAMPLE_S` slot
(:func:`merge`): rates, devices add up; lag is the app's on every worker (max); latency is the
worst worker's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from connectors.mqtt.front.metrics import quantile
from streams.metrics import Key

SAMPLE_S = 10.0
KEEP = 360
"""One hour of samples."""


@dataclass(frozen=True)
class TrendPoint:
    at: float
    """Wall-clock time of the sample (epoch seconds)."""
    readings_in_per_s: float
    readings_out_per_s: float
    dead_letters_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    lag: int | None
    devices_online: int | None
    devices_offline: int | None


@dataclass(frozen=True)
class Reading:
    """What the sampler reads at one moment (all counts are totals since the worker started)."""

    wall: float
    monotonic: float
    totals: Mapping[Key, float]
    latency_bounds: Sequence[float]
    latency_counts: Sequence[int]
    lag: int | None
    devices: Mapping[str, int] | None


class Trends:
    """The ring buffer of one worker and the differences that fill it."""

    def __init__(self, readings_topic: str, deadletter_topic: str, keep: int = KEEP) -> None:
        self._readings = readings_topic
        self._deadletter = deadletter_topic
        self._points: deque[TrendPoint] = deque(maxlen=keep)
        self._previous: Reading | None = None
        self._devices: dict[str, int] | None = None

    def sample(self, now: Reading) -> TrendPoint | None:
        """Add the point since the previous reading (none for the first reading)."""
        before, self._previous = self._previous, now
        self._devices = None if now.devices is None else dict(now.devices)
        if before is None or now.monotonic <= before.monotonic:
            return None
        elapsed = now.monotonic - before.monotonic

        def per_s(keys: Iterable[Key]) -> float:
            return sum(max(0.0, now.totals[k] - before.totals.get(k, 0.0)) for k in keys) / elapsed

        out = [("produced", "validate", self._readings)]
        letters = [key for key in now.totals if key[0] == "dead_letters"]
        into_letters = [("produced", "validate", self._deadletter)]
        delta = [n - b for n, b in zip(now.latency_counts, before.latency_counts, strict=True)]
        cumulative = _cumulative(now.latency_bounds, delta)
        point = TrendPoint(
            at=now.wall,
            readings_in_per_s=per_s(k for k in out + into_letters if k in now.totals),
            readings_out_per_s=per_s(k for k in out if k in now.totals),
            dead_letters_per_s=per_s(letters),
            latency_p50_s=_finite(quantile(cumulative, 0.5)),
            latency_p99_s=_finite(quantile(cumulative, 0.99)),
            lag=now.lag,
            devices_online=None if now.devices is None else now.devices.get("online", 0),
            devices_offline=None if now.devices is None else now.devices.get("offline", 0),
        )
        self._points.append(point)
        return point

    def points(self) -> list[dict[str, Any]]:
        return [asdict(point) for point in self._points]

    def latest_devices(self) -> dict[str, int] | None:
        """Devices per state at the newest reading, the first one included (``None`` before
        one, or when the table was not ready then)."""
        return None if self._devices is None else dict(self._devices)


def _cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[float, float]]:
    running, buckets = 0, []
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        running += count
        buckets.append((bound, float(running)))
    return buckets


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: beyond the last bucket shows as no value (the page says so)."""
    return None if value is None or math.isinf(value) else value


_ADDED = ("readings_in_per_s", "readings_out_per_s", "dead_letters_per_s")
_WORST = ("latency_p50_s", "latency_p99_s", "lag")
_COUNTED = ("devices_online", "devices_offline")


def merge(per_worker: Iterable[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every worker's points, one per :data:`SAMPLE_S` slot: rates and devices added up, lag
    and latency the largest (see the module docstring); ``workers`` says how many answered."""
    slots: dict[int, dict[str, Any]] = {}
    for points in per_worker:
        for point in points:
            slot = int(point["at"] // SAMPLE_S)
            merged = slots.get(slot)
            if merged is None:
                slots[slot] = {**point, "at": slot * SAMPLE_S, "workers": 1}
                continue
            merged["workers"] += 1
            for name in _ADDED:
                merged[name] += point[name]
            for name in (*_WORST, *_COUNTED):
                mine, theirs = merged[name], point[name]
                if theirs is not None:
                    added = name in _COUNTED and mine is not None
                    merged[name] = mine + theirs if added else max(mine or 0, theirs)
    return [slots[slot] for slot in sorted(slots)]

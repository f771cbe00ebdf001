"""Percentiles and the figures every benchmark result carries."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Latency percentiles in milliseconds."""

    p50: float
    p95: float
    p99: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, linear between closest ranks
    (the same definition as numpy's default and Postgres' ``percentile_cont``)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def summarize(values_ms: Sequence[float]) -> Percentiles:
    """p50/p95/p99 of latencies in milliseconds."""
    ordered = sorted(values_ms)
    return Percentiles(percentile(ordered, 50), percentile(ordered, 95), percentile(ordered, 99))


@dataclass
class Result:
    """One system measured in one scenario: what a RESULTS.md table row says.

    ``rate`` is readings per second over ``seconds``; ``steady_rate`` (optional) excludes the
    start-up (e.g. from the first row stored to the last). ``cpu_s`` maps a process (``api``,
    ``worker``, ``kafka``, ``postgres``, ``redis``, ``load``...) to CPU seconds in the window.
    """

    scenario: str
    system: str
    readings: int
    seconds: float
    latency: Percentiles | None = None
    steady_rate: float | None = None
    cpu_s: Mapping[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    @property
    def best_rate(self) -> float:
        """The steady rate when measured, else the overall rate (used for target ratios)."""
        return self.steady_rate if self.steady_rate is not None else self.rate

    def cpu_per_million(self) -> dict[str, float]:
        """CPU seconds per million readings, per process."""
        if not self.readings:
            return {}
        return {name: s * 1_000_000 / self.readings for name, s in self.cpu_s.items()}

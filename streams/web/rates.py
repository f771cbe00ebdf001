"""Rates from counters: per-second differences of the metrics' totals over a short window.

A timer samples :meth:`streams.metrics.WorkerMetrics.totals` every couple of seconds; a rate is
the difference between the newest sample and the newest one at least ``window_s`` older,
divided by the time between them (or between the newest and the oldest sample, shortly after
a start). Nothing here reads a clock: callers pass the times, so tests choose them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class RateWindow(Generic[K]):
    def __init__(self, window_s: float = 10.0, keep: int = 64) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, dict[K, float]]] = deque(maxlen=keep)

    def sample(self, now: float, totals: Mapping[K, float]) -> None:
        self._samples.append((now, dict(totals)))

    def rates(self) -> dict[K, float]:
        """Per-second change of every total over the window (empty before two samples)."""
        if len(self._samples) < 2:
            return {}
        newest_at, newest = self._samples[-1]
        base_at, base = self._samples[0]
        for at, totals in reversed(self._samples):
            if newest_at - at >= self.window_s:
                base_at, base = at, totals
                break
        elapsed = newest_at - base_at
        if elapsed <= 0:
            return {}
        return {
            key: max(0.0, value - base.get(key, 0.0)) / elapsed for key, value in newest.items()
        }

"""The one "now" that tests read.

Unit tests run on a frozen clock (``tests/unit/conftest.py`` freezes it before any test module
is imported): nothing they assert may depend on the day the suite runs, and ``make test`` runs
them a second time with the system clock 400 days ahead (``python -m tests.future``) to prove
it. Integration tests talk to services that stamp their own time (the edge's clock-skew window,
Postgres day partitions made for today), so they read the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

FROZEN_AT: Final = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
""""Now" for every unit test."""


def _wall() -> datetime:
    return datetime.now(UTC)


@dataclass
class TestClock:
    """Wall time until frozen. ``base_time`` is fixed when the clock is made or frozen, so that
    readings built during one run never straddle a midnight."""

    frozen_at: datetime | None = None
    base: datetime = field(default_factory=lambda: _noon_before(_wall()))

    __test__ = False  # not a test class, whatever its name says to pytest

    def now(self) -> datetime:
        return self.frozen_at if self.frozen_at is not None else _wall()

    def freeze(self, at: datetime = FROZEN_AT) -> None:
        self.frozen_at = at
        self.base = _noon_before(at)


def _noon_before(at: datetime) -> datetime:
    """Noon (UTC) of the day before ``at``: inside the edge's window (30 days back) and in a day
    partition the maintenance job made (yesterday to a week ahead)."""
    return (at - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)


CLOCK: Final = TestClock()


def now() -> datetime:
    return CLOCK.now()


def base_time() -> datetime:
    """The timestamp of reading number 0 built by :mod:`tests.factories`."""
    return CLOCK.base

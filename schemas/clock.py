"""Where every layer takes "now" from: a clock is passed in, never read from the system inline,
so that tests (and replays) can run at a time of their choosing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Gives the current time, timezone-aware (UTC)."""


def utc_now() -> datetime:
    """The system clock: the default :data:`Clock` of every service."""
    return datetime.now(UTC)

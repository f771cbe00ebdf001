"""Token buckets per device: burst, refill, profiles, no limit, bounded memory."""

from __future__ import annotations

import pytest

from api import limits
from api.limits import RateLimiter, retry_after_header
from schemas.settings import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_token_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_s=2.0, burst=3), {}, clock)
    assert [limiter.acquire("d", None) for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("d", None)
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("d", None) is None
    assert limiter.acquire("other", None) is None  # buckets are per device


def test_profiles_pick_their_limit_and_zero_means_unlimited() -> None:
    clock = Clock()
    profiles = {"camera": RateLimit(per_s=1.0, burst=1), "gateway": RateLimit(per_s=0, burst=1)}
    limiter = RateLimiter(RateLimit(per_s=10.0, burst=10), profiles, clock)
    assert limiter.acquire("cam", "camera") is None
    assert limiter.acquire("cam", "camera") == pytest.approx(1.0)
    assert all(limiter.acquire("gw", "gateway") is None for _ in range(1000))
    assert all(limiter.acquire("esp", "unknown-profile") is None for _ in range(10))
    assert limiter.acquire("esp", "unknown-profile") is not None


def test_idle_buckets_are_forgotten_when_the_map_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_s=1.0, burst=2), {}, clock)
    for n in range(10):
        limiter.acquire(f"d{n}", None)
    clock.now += 5  # all refilled
    limiter.acquire("new", None)
    assert len(limiter._buckets) == 1


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2)] == ["1", "1", "2"]

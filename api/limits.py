"""Per-device rate limits (token buckets in this process) and the bound on requests in flight.

Each API instance keeps its own buckets, so behind a load balancer a device gets up to N times
its rate across N instances; the limit protects each process and the broker from one noisy
device, it is not a billing quota. A bucket holds ``burst`` tokens, refills ``per_s`` a second,
and each request of the device costs one token; an empty bucket answers 429 with the seconds
until the next token in ``Retry-After``. The device's profile (from the device cache) picks the
limit in ``FLEET_API__RATE_LIMIT_PROFILES``, else ``FLEET_API__RATE_LIMIT`` applies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from schemas.settings import RateLimit

MAX_BUCKETS = 100_000
"""Buckets kept before full (idle) ones are forgotten: a forgotten bucket is a full one."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(
        self,
        default: RateLimit,
        profiles: Mapping[str, RateLimit],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = default
        self._profiles = dict(profiles)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def limit_for(self, profile: str | None) -> RateLimit:
        return self._profiles.get(profile or "", self._default)

    def acquire(self, device_id: str, profile: str | None) -> float | None:
        """Take a token for ``device_id``: ``None`` if granted, else seconds until one is free."""
        limit = self.limit_for(profile)
        if limit.per_s <= 0:
            return None
        now = self._clock()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[device_id] = _Bucket(float(limit.burst), now)
        else:
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.per_s)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / limit.per_s

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (they would behave exactly like new ones)."""
        for device_id, bucket in list(self._buckets.items()):
            limit = self._default
            if bucket.tokens + (now - bucket.stamp) * max(limit.per_s, 1e-9) >= limit.burst:
                del self._buckets[device_id]
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: forget the oldest half
            oldest = sorted(self._buckets.items(), key=lambda item: item[1].stamp)
            for device_id, _ in oldest[: len(oldest) // 2]:
                del self._buckets[device_id]


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` is whole seconds: round up, at least 1."""
    return str(max(1, math.ceil(seconds)))

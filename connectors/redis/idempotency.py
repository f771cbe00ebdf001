"""``Idempotency-Key`` records in Redis: which body a key was first used with, for every API
instance.

Event ids already make a retried request idempotent (they are a uuid5 of the device, the key and
the item's index, and the sinks drop repeats), but a key reused with a *different* body would map
new readings onto the ids of old ones and the sinks would silently drop them. So the first use of
a key stores the digest of its body (``SET NX`` with a TTL); a later use with the same digest is
a retry, one with another digest is refused.

Keys are ``fleet:idempotency:<scope>:<sha256 of the key>``: the scope is the device the
credentials belong to, so two devices may use the same key; the key is hashed so its length and
characters never matter to Redis.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas.errors import FleetError

KEY_PREFIX = "fleet:idempotency:"


class Claim(Enum):
    FIRST = "first"
    """The key was unused: the request goes ahead."""
    RETRY = "retry"
    """The key was used with the same body: a retry, it goes ahead and maps onto the same ids."""
    CONFLICT = "conflict"
    """The key was used with another body: refuse it."""


class IdempotencyUnavailable(FleetError):
    """Redis did not answer; the key cannot be checked now."""

    retriable = True


class IdempotencyStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    async def claim(self, scope: str, key: str, digest: str) -> Claim:
        """Record ``digest`` as the body of ``key`` unless the key is known; compare if it is."""
        name = redis_key(scope, key)
        try:
            if await self._redis.set(name, digest, nx=True, ex=self._ttl_s):
                return Claim.FIRST
            stored = await self._redis.get(name)
        except (RedisError, OSError) as exc:
            raise IdempotencyUnavailable(f"Redis did not answer: {exc}") from exc
        if stored is None:  # expired between SET and GET: claim it again
            return await self.claim(scope, key, digest)
        stored_text = stored.decode() if isinstance(stored, bytes) else str(stored)
        return Claim.RETRY if stored_text == digest else Claim.CONFLICT

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def redis_key(scope: str, key: str) -> str:
    return f"{KEY_PREFIX}{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

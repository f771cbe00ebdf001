"""Every Redis connection of ours, built from the settings (address, database, TLS).

redis-py clients (asyncio and sync) and the sink's :class:`RedisPipe` take their TLS from
``connectors.tls``, so ``FLEET_REDIS__TLS`` reaches each of them.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from connectors.redis.wire import RedisPipe
from connectors.redis.writer import connect_commands
from connectors.tls import redis_client_options, redis_ssl
from schemas.settings import RedisSettings


def async_client(settings: RedisSettings, **options: Any) -> aioredis.Redis:
    """An asyncio client; ``options`` are redis-py's (timeouts, ``decode_responses``)."""
    return aioredis.Redis(**redis_client_options(settings), **options)


def sync_client(settings: RedisSettings, **options: Any) -> redis.Redis:
    """A blocking client (benchmarks and command-line checks)."""
    return redis.Redis(**redis_client_options(settings), **options)


def writer_pipe(settings: RedisSettings) -> RedisPipe:
    """The Redis sink's pipelined connection: its database selected, its script loaded."""
    return RedisPipe(
        settings.host, settings.port, connect_commands(settings.db), tls=redis_ssl(settings)
    )

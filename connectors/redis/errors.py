"""Which Redis errors are outages (retried while the partition waits).

Every error reply is the service refusing (``OOM`` at ``maxmemory``, ``MISCONF`` when it cannot
save, ``NOAUTH``, a ``WRONGTYPE`` key someone else wrote): the sink's keys and commands are
ours, so no reading can provoke one. The sink waits and retries, logged and counted, and says
why in ``/ops/`` and ``fleet_agent_waiting``; it never stops the worker.
"""

from __future__ import annotations

import redis.exceptions


def is_retriable(exc: BaseException) -> bool:
    """Connection trouble, timeouts, and every error reply (a loading, read-only, full or
    misconfigured server, a lost script that the writer reloads on reconnecting): try again."""
    return isinstance(exc, redis.exceptions.RedisError | OSError)

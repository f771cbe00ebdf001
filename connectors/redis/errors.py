"""Which Redis errors are outages (retried while the partition waits)."""

from __future__ import annotations

import redis.exceptions


def is_retriable(exc: BaseException) -> bool:
    """Connection trouble, timeouts, a loading or read-only server, a server that lost the
    sink's script (restarted, ``SCRIPT FLUSH``; the writer reloads it on reconnecting): try
    again."""
    return isinstance(
        exc,
        redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | redis.exceptions.BusyLoadingError
        | redis.exceptions.ReadOnlyError
        | redis.exceptions.TryAgainError
        | redis.exceptions.NoScriptError
        | OSError,
    )

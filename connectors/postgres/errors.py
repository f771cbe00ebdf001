"""Classify asyncpg's errors as retriable (the server or the link is down) or not (the data)."""

from __future__ import annotations

import asyncpg

# Losing the connection, a server restarting or refusing connections: trying again can help.
_RETRIABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


def is_retriable(exc: BaseException) -> bool:
    # asyncpg's client-side DataError (bad query input) subclasses InterfaceError and ValueError:
    # it is about the data, so retrying cannot help.
    if isinstance(exc, ValueError):
        return False
    return isinstance(exc, _RETRIABLE)

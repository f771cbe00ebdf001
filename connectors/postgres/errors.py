"""Which Postgres errors are about the data, and which about the service.

Only a data error (SQLSTATE class 22 "data exception", class 23 "integrity constraint
violation", or asyncpg refusing a value before it is sent) is specific to some rows: those rows
go to the dead-letter topic. Everything else — the server down or restarting, a missing table,
a revoked grant — is retried with backoff while the partition waits, because dead-lettering every
row would turn a misconfiguration into a mass replay job.

Stores that answer a request (the registries, alerts, media) turn the errors that mean "Postgres
is not reachable" into :class:`DatabaseUnavailable` with :func:`unavailable_as_error`: the API
answers 503 with ``Retry-After``, the CLI prints one line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from schemas.errors import FleetError

_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    # asyncpg's client-side DataError (bad query input) subclasses ValueError; TypeError comes
    # from the binary COPY encoder for a value of the wrong type.
    ValueError,
    TypeError,
)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
)
"""Errors that mean "Postgres is not reachable" (rather than "this statement failed")."""


class DatabaseUnavailable(FleetError):
    retriable = True


def is_data_error(exc: BaseException) -> bool:
    return isinstance(exc, _DATA_ERRORS)


def is_retriable(exc: BaseException) -> bool:
    """Trying again may help: anything that is not about the rows themselves."""
    return not is_data_error(exc)


@asynccontextmanager
async def unavailable_as_error() -> AsyncIterator[None]:
    """Errors that mean "Postgres is not reachable" become :class:`DatabaseUnavailable`."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"Postgres is unavailable: {exc}") from exc

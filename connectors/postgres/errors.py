"""Which Postgres errors are about the data, and which about the service.

Only a data error (SQLSTATE class 22 "data exception", class 23 "integrity constraint
violation", or asyncpg refusing a value before it is sent) is specific to some rows: those rows
go to the dead-letter topic. Everything else — the server down or restarting, a missing table,
a revoked grant — is retried with backoff while the partition waits, because dead-lettering every
row would turn a misconfiguration into a mass replay job.
"""

from __future__ import annotations

import asyncpg

_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    # asyncpg's client-side DataError (bad query input) subclasses ValueError; TypeError comes
    # from the binary COPY encoder for a value of the wrong type.
    ValueError,
    TypeError,
)


def is_data_error(exc: BaseException) -> bool:
    return isinstance(exc, _DATA_ERRORS)


def is_retriable(exc: BaseException) -> bool:
    """Trying again may help: anything that is not about the rows themselves."""
    return not is_data_error(exc)

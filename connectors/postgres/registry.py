"""A registry's table in Postgres (``devices``, ``flows``): what every registry store shares.

A registry store never publishes itself; :mod:`connectors.registry` does, through
:meth:`RegistryTable.publish_current` and :meth:`RegistryTable.publish_all`, which read the
committed state under advisory locks so that concurrent writers (several API instances, the
CLI) publish in the order Postgres committed:

* one record's publish holds the table's lock shared and the record's lock (second key:
  ``hashtext(id)``) exclusively, and reads the record once it holds both: of two racing
  publishers the second publishes what the later commit wrote, so the topic ends where the table
  is;
* a resync (``publish_all``) holds the table's lock exclusively: no single publish runs
  meanwhile.

Errors that mean "Postgres is not reachable" become
:class:`~connectors.postgres.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

import asyncpg

from connectors.postgres.errors import unavailable_as_error
from schemas.errors import FleetError

D = TypeVar("D")

Publish: TypeAlias = Callable[[str, D | None], Awaitable[None]]
"""``publish(id, current record or None)``: called under the record's lock."""
PublishMany: TypeAlias = Callable[[Sequence[tuple[str, D | None]]], Awaitable[None]]
"""``publish([(id, current record or None), ...])``: called while no single publish can run."""
PublishAll: TypeAlias = Callable[[Sequence[D]], Awaitable[None]]
"""``publish(every record)``: called while no single publish can run."""


class RecordNotFound(FleetError):
    """No record with that id; the subclass (``DeviceNotFound``, ``FlowNotFound``) says what."""

    def __init__(self, record_id: str, message: str) -> None:
        super().__init__(message)
        self.record_id = record_id


class RecordExists(FleetError):
    """A record with that id exists already."""

    def __init__(self, record_id: str, message: str) -> None:
        super().__init__(message)
        self.record_id = record_id


@dataclass(frozen=True)
class Page(Generic[D]):
    """One page of a listing and how many records the whole listing has."""

    items: list[D]
    total: int


@dataclass(frozen=True)
class TableSpec(Generic[D]):
    """Where a registry's records are and how a row becomes one."""

    table: str
    key: str
    """The id column."""
    columns: str
    """The selected columns (constants only: they are interpolated into the SQL)."""
    lock_all: int
    """Advisory lock namespace: shared by every publish of one record, exclusive for a resync."""
    lock_one: int
    """Advisory lock namespace of one record (second key: ``hashtext(id)``)."""
    record: Callable[[asyncpg.Record], D]
    not_found: Callable[[str], RecordNotFound]

    @property
    def select_one(self) -> str:
        return f"SELECT {self.columns} FROM {self.table} WHERE {self.key} = $1"  # noqa: S608

    @property
    def select_all(self) -> str:
        return f"SELECT {self.columns} FROM {self.table} ORDER BY {self.key}"  # noqa: S608


class RegistryTable(Generic[D]):
    """Delete and publish, the same for every registry; subclasses add their own changes."""

    def __init__(self, pool: asyncpg.Pool, spec: TableSpec[D]) -> None:
        self._pool = pool
        self._spec = spec

    async def delete(self, record_id: str) -> None:
        spec = self._spec
        async with unavailable_as_error():
            status = await self._pool.execute(
                f"DELETE FROM {spec.table} WHERE {spec.key} = $1",  # noqa: S608
                record_id,
            )
        if status == "DELETE 0":
            raise spec.not_found(record_id)

    async def publish_current(self, record_id: str, publish: Publish[D]) -> None:
        """Call ``publish(record_id, current state or None)`` while holding the record's lock.

        The state is read after the lock is taken, so of two racing publishers the second
        publishes what the later commit wrote: the topic ends where the table is.
        """
        spec = self._spec
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1, 0)", spec.lock_all)
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", spec.lock_one, record_id
            )
            row = await conn.fetchrow(spec.select_one, record_id)
            await publish(record_id, None if row is None else spec.record(row))

    async def publish_current_many(
        self, record_ids: Sequence[str], publish: PublishMany[D]
    ) -> None:
        """Call ``publish([(id, current state or None)])`` for ``record_ids`` while no
        single-record publish can run (the table's lock, exclusive).

        One lock for the lot rather than one per record: a bulk import's 10,000 record locks
        would outgrow Postgres's shared lock table (``max_locks_per_transaction``). Single
        publishes wait meanwhile; the states are read under the lock, as in
        :meth:`publish_current`, so the topic still ends where the table is.
        """
        spec = self._spec
        select = f"SELECT {spec.columns} FROM {spec.table} WHERE {spec.key} = ANY($1::text[])"  # noqa: S608
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", spec.lock_all)
            rows = await conn.fetch(select, list(record_ids))
            current = {row[spec.key]: spec.record(row) for row in rows}
            await publish([(record_id, current.get(record_id)) for record_id in record_ids])

    async def publish_all(self, publish: PublishAll[D]) -> None:
        """Call ``publish(every record)`` while no single-record publish can run."""
        spec = self._spec
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", spec.lock_all)
            rows = await conn.fetch(spec.select_all)
            await publish([spec.record(row) for row in rows])

    def _required(self, row: asyncpg.Record | None, record_id: str) -> asyncpg.Record:
        if row is None:
            raise self._spec.not_found(record_id)
        return row

"""The ``devices`` table: the device registry's system of record.

:class:`DeviceStore` creates, lists, reads, changes and deletes devices. It never publishes;
:mod:`connectors.registry` does, through ``publish_current`` and ``publish_all``
(:class:`~connectors.postgres.registry.RegistryTable`, shared with the flow registry), which read
the committed state under an advisory lock so that concurrent writers (several API instances,
the CLI) publish in the order Postgres committed. Errors that mean "Postgres is not reachable"
become :class:`~connectors.postgres.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

# DatabaseUnavailable is defined in connectors.postgres.errors; it is re-exported here only for
# the modules that still import it from this one (connectors/postgres/media.py, api/media/).
from connectors.postgres.errors import DatabaseUnavailable as DatabaseUnavailable
from connectors.postgres.errors import unavailable_as_error
from connectors.postgres.registry import (
    Page,
    RecordExists,
    RecordNotFound,
    RegistryTable,
    TableSpec,
)
from schemas.devices import Device, DeviceChanges, NewDevice, device_own_metadata
from schemas.errors import FleetError

# SQL below interpolates only these constant column lists and generated $n placeholders
# (ruff S608); every value travels as a bind parameter.
_COLUMNS = (
    "device_id, name, profile, tags, metadata::text AS metadata, is_enabled, token_hash, "
    "inactivity_timeout_s, created_at, updated_at, last_seen_at"
)


class DeviceNotFound(RecordNotFound):
    def __init__(self, device_id: str) -> None:
        super().__init__(device_id, f"device {device_id} is not registered")
        self.device_id = device_id


class DeviceExists(RecordExists):
    def __init__(self, device_id: str) -> None:
        super().__init__(device_id, f"device {device_id} is already registered")
        self.device_id = device_id


class TokenInUse(FleetError):
    """An operator-supplied token is another device's token already; ``device_id`` names the
    device of the request that asked for it, when a bulk import knows which one."""

    def __init__(self, message: str, device_id: str | None = None) -> None:
        super().__init__(message)
        self.device_id = device_id


@dataclass(frozen=True)
class DeviceQuery:
    """Filters and paging of a device listing; ``search`` is a device_id or name prefix."""

    limit: int = 100
    offset: int = 0
    enabled: bool | None = None
    profile: str | None = None
    tag: str | None = None
    search: str | None = None


DevicePage = Page[Device]


class DeviceStore(RegistryTable[Device]):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool, _TABLE)

    async def create(self, new: NewDevice, token_hash: str) -> Device:
        sql = (
            "INSERT INTO devices (device_id, name, profile, tags, metadata, is_enabled, "  # noqa: S608
            f"token_hash, inactivity_timeout_s) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8) "
            f"RETURNING {_COLUMNS}"
        )
        args = (
            new.device_id,
            new.name,
            new.profile,
            new.tags,
            _json(new.metadata),
            new.is_enabled,
            token_hash,
            new.inactivity_timeout_s,
        )
        async with unavailable_as_error():
            try:
                row = await self._pool.fetchrow(sql, *args)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "devices_token_hash":
                    raise TokenInUse("that token is already another device's token") from exc
                raise DeviceExists(new.device_id) from exc
        return _device(self._required(row, new.device_id))

    async def create_many(self, devices: Sequence[tuple[NewDevice, str]]) -> builtins.list[str]:
        """Insert ``(device, token_hash)`` pairs in one statement; returns the ids it inserted.

        A device_id that is already registered is left as it is (``ON CONFLICT DO NOTHING``):
        the caller reports it as existing. A token hash that is another device's raises
        :class:`TokenInUse` naming the first such device, and nothing is inserted.
        """
        columns = _bulk_columns(devices)
        async with unavailable_as_error():
            try:
                rows = await self._pool.fetch(_INSERT_MANY, *columns)
            except asyncpg.UniqueViolationError as exc:
                raise await self._token_in_use(devices) from exc
        return [row["device_id"] for row in rows]

    async def _token_in_use(self, devices: Sequence[tuple[NewDevice, str]]) -> TokenInUse:
        """Which device of ``devices`` asked for a token another device holds."""
        hashes = [token_hash for _, token_hash in devices]
        sql = "SELECT device_id, token_hash FROM devices WHERE token_hash = ANY($1::text[])"
        owners = {
            row["token_hash"]: row["device_id"] for row in await self._pool.fetch(sql, hashes)
        }
        for new, token_hash in devices:
            owner = owners.get(token_hash)
            if owner is not None and owner != new.device_id:
                return TokenInUse(
                    f"device {new.device_id}: that token is already another device's token",
                    new.device_id,
                )
        # The holder was deleted meanwhile: the caller may simply retry.
        return TokenInUse("a token of this import is already another device's token")

    async def get(self, device_id: str) -> Device | None:
        async with unavailable_as_error():
            row = await self._pool.fetchrow(_TABLE.select_one, device_id)
        return None if row is None else _device(row)

    async def list(self, query: DeviceQuery) -> DevicePage:
        where, args = _filters(query)
        page_sql = (
            f"SELECT {_COLUMNS} FROM devices{where} ORDER BY device_id "  # noqa: S608
            f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}"
        )
        async with unavailable_as_error():
            rows = await self._pool.fetch(page_sql, *args, query.limit, query.offset)
            total = await self._pool.fetchval(f"SELECT count(*) FROM devices{where}", *args)  # noqa: S608
        return DevicePage([_device(row) for row in rows], int(total))

    async def update(self, device_id: str, changes: DeviceChanges) -> Device:
        values = changes.as_dict()
        if not values:
            current = await self.get(device_id)
            if current is None:
                raise DeviceNotFound(device_id)
            return current
        sets, args = [], []
        for index, (column, value) in enumerate(values.items(), start=2):
            cast = "::jsonb" if column == "metadata" else ""
            sets.append(f"{column} = ${index}{cast}")
            args.append(_json(value) if column == "metadata" else value)
        sql = (
            f"UPDATE devices SET {', '.join(sets)}, updated_at = now() WHERE device_id = $1 "  # noqa: S608
            f"RETURNING {_COLUMNS}"
        )
        async with unavailable_as_error():
            row = await self._pool.fetchrow(sql, device_id, *args)
        return _device(self._required(row, device_id))

    async def update_own_metadata(self, device_id: str, metadata: dict[str, Any]) -> Device:
        """Replace the metadata as the device itself asks: the operator's keys stay as stored
        (:func:`schemas.devices.device_own_metadata`, which raises ``OperatorMetadata``). The
        row is locked from the read to the write, so an operator's change made meanwhile is
        neither lost nor checked against a stale value."""
        select = "SELECT metadata::text FROM devices WHERE device_id = $1 FOR UPDATE"
        update = (
            "UPDATE devices SET metadata = $2::jsonb, updated_at = now() "  # noqa: S608
            f"WHERE device_id = $1 RETURNING {_COLUMNS}"
        )
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(select, device_id)
            if stored is None:
                raise DeviceNotFound(device_id)
            kept = device_own_metadata(msgspec.json.decode(stored), metadata)
            row = await conn.fetchrow(update, device_id, _json(kept))
        return _device(self._required(row, device_id))

    async def set_token(self, device_id: str, token_hash: str) -> Device:
        sql = (
            "UPDATE devices SET token_hash = $2, updated_at = now() WHERE device_id = $1 "  # noqa: S608
            f"RETURNING {_COLUMNS}"
        )
        async with unavailable_as_error():
            try:
                row = await self._pool.fetchrow(sql, device_id, token_hash)
            except asyncpg.UniqueViolationError as exc:
                raise TokenInUse("that token is already another device's token") from exc
        return _device(self._required(row, device_id))

    async def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            async with unavailable_as_error():
                await self._pool.fetchval("SELECT 1", timeout=timeout_s)
        except DatabaseUnavailable:
            return False
        return True


def _filters(query: DeviceQuery) -> tuple[str, builtins.list[Any]]:
    clauses: builtins.list[str] = []
    args: builtins.list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.enabled is not None:
        clauses.append(f"is_enabled = {arg(query.enabled)}")
    if query.profile is not None:
        clauses.append(f"profile = {arg(query.profile)}")
    if query.tag is not None:
        clauses.append(f"tags @> ARRAY[{arg(query.tag)}]::text[]")
    if query.search:
        prefix = _like_prefix(query.search)
        clauses.append(f"(device_id LIKE {arg(prefix)} OR lower(name) LIKE {arg(prefix.lower())})")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


# One round trip for a whole chunk: each column travels as one array. tags and metadata go as
# JSON text (Postgres arrays cannot be ragged). A device_id already stored is skipped.
_INSERT_MANY = """
    INSERT INTO devices (device_id, name, profile, tags, metadata, is_enabled, token_hash,
                         inactivity_timeout_s)
    SELECT d.device_id, d.name, d.profile,
           ARRAY(SELECT jsonb_array_elements_text(d.tags::jsonb)), d.metadata::jsonb,
           d.is_enabled, d.token_hash, d.timeout_s
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
                $7::text[], $8::int[])
         AS d(device_id, name, profile, tags, metadata, is_enabled, token_hash, timeout_s)
    ON CONFLICT (device_id) DO NOTHING
    RETURNING device_id
"""


def _bulk_columns(devices: Sequence[tuple[NewDevice, str]]) -> builtins.list[builtins.list[Any]]:
    """``devices`` as the eight column arrays of :data:`_INSERT_MANY`."""
    return [
        [new.device_id for new, _ in devices],
        [new.name for new, _ in devices],
        [new.profile for new, _ in devices],
        [_json(new.tags) for new, _ in devices],
        [_json(new.metadata) for new, _ in devices],
        [new.is_enabled for new, _ in devices],
        [token_hash for _, token_hash in devices],
        [new.inactivity_timeout_s for new, _ in devices],
    ]


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _device(row: asyncpg.Record) -> Device:
    return Device(
        device_id=row["device_id"],
        name=row["name"],
        profile=row["profile"],
        tags=list(row["tags"]),
        metadata=msgspec.json.decode(row["metadata"]),
        is_enabled=row["is_enabled"],
        token_hash=row["token_hash"],
        inactivity_timeout_s=row["inactivity_timeout_s"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen_at=row["last_seen_at"],
    )


_TABLE = TableSpec(
    table="devices",
    key="device_id",
    columns=_COLUMNS,
    lock_all=0x666C6430,
    lock_one=0x666C6431,
    record=_device,
    not_found=DeviceNotFound,
)

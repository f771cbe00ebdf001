"""The ``flows`` and ``flow_versions`` tables: the flow registry's system of record.

Like :mod:`connectors.postgres.devices`, the store never publishes itself: ``publish_current``
and ``publish_all`` (:class:`~connectors.postgres.registry.RegistryTable`) read the committed
state under an advisory lock so concurrent writers publish in commit order (see
:mod:`connectors.registry`).
"""

from __future__ import annotations

import asyncpg
import msgspec

from connectors.postgres.errors import unavailable_as_error
from connectors.postgres.registry import (
    Page,
    RecordExists,
    RecordNotFound,
    RegistryTable,
    TableSpec,
)
from schemas.flows import FlowDefinition, FlowDocument

_COLUMNS = "flow_id, version, enabled, definition::text AS definition, created_at, updated_at"
_definition_decoder = msgspec.json.Decoder(FlowDefinition)


class FlowNotFound(RecordNotFound):
    def __init__(self, flow_id: str, version: int | None = None) -> None:
        which = f"flow {flow_id}" if version is None else f"version {version} of flow {flow_id}"
        super().__init__(flow_id, f"{which} does not exist")
        self.flow_id = flow_id


class FlowExists(RecordExists):
    def __init__(self, flow_id: str) -> None:
        super().__init__(flow_id, f"flow {flow_id} already exists")
        self.flow_id = flow_id


FlowPage = Page[FlowDocument]


class FlowStore(RegistryTable[FlowDocument]):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool, _TABLE)

    async def create(
        self, flow_id: str, definition: FlowDefinition, enabled: bool = True
    ) -> FlowDocument:
        body = _json(definition)
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    "INSERT INTO flows (flow_id, name, version, enabled, definition) "  # noqa: S608
                    f"VALUES ($1, $2, 1, $3, $4::jsonb) RETURNING {_COLUMNS}",
                    flow_id,
                    definition.name,
                    enabled,
                    body,
                )
            except asyncpg.UniqueViolationError as exc:
                raise FlowExists(flow_id) from exc
            await _keep_version(conn, flow_id, 1, body)
        return _document(self._required(row, flow_id))

    async def get(self, flow_id: str, version: int | None = None) -> FlowDocument | None:
        async with unavailable_as_error():
            row = await self._pool.fetchrow(_TABLE.select_one, flow_id)
            if row is None or version is None or version == row["version"]:
                return None if row is None else _document(row)
            old = await self._pool.fetchrow(
                "SELECT definition::text AS definition, created_at FROM flow_versions "
                "WHERE flow_id = $1 AND version = $2",
                flow_id,
                version,
            )
        if old is None:
            return None
        current = _document(row)
        return FlowDocument(
            flow_id=flow_id,
            version=version,
            enabled=current.enabled,
            definition=_definition_decoder.decode(old["definition"]),
            created_at=current.created_at,
            updated_at=old["created_at"],
        )

    async def list(
        self, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
    ) -> FlowPage:
        where, args = ("", []) if enabled is None else (" WHERE enabled = $1", [enabled])
        n = len(args)
        async with unavailable_as_error():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM flows{where} ORDER BY flow_id "  # noqa: S608
                f"LIMIT ${n + 1} OFFSET ${n + 2}",
                *args,
                limit,
                offset,
            )
            total = await self._pool.fetchval(f"SELECT count(*) FROM flows{where}", *args)  # noqa: S608
        return FlowPage([_document(row) for row in rows], int(total))

    async def update(self, flow_id: str, definition: FlowDefinition) -> FlowDocument:
        """A new version with ``definition`` (the old one stays in ``flow_versions``)."""
        body = _json(definition)
        async with unavailable_as_error(), self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE flows SET definition = $2::jsonb, name = $3, version = version + 1, "  # noqa: S608
                f"updated_at = now() WHERE flow_id = $1 RETURNING {_COLUMNS}",
                flow_id,
                body,
                definition.name,
            )
            document = _document(self._required(row, flow_id))
            await _keep_version(conn, flow_id, document.version, body)
        return document

    async def set_enabled(self, flow_id: str, enabled: bool) -> FlowDocument:
        async with unavailable_as_error():
            row = await self._pool.fetchrow(
                "UPDATE flows SET enabled = $2, updated_at = now() WHERE flow_id = $1 "  # noqa: S608
                f"RETURNING {_COLUMNS}",
                flow_id,
                enabled,
            )
        return _document(self._required(row, flow_id))


async def _keep_version(conn: asyncpg.Connection, flow_id: str, version: int, body: str) -> None:
    await conn.execute(
        "INSERT INTO flow_versions (flow_id, version, definition) VALUES ($1, $2, $3::jsonb)",
        flow_id,
        version,
        body,
    )


def _json(definition: FlowDefinition) -> str:
    return msgspec.json.encode(definition).decode()


def _document(row: asyncpg.Record) -> FlowDocument:
    return FlowDocument(
        flow_id=row["flow_id"],
        version=row["version"],
        enabled=row["enabled"],
        definition=_definition_decoder.decode(row["definition"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_TABLE = TableSpec(
    table="flows",
    key="flow_id",
    columns=_COLUMNS,
    lock_all=0x666C7730,
    lock_one=0x666C7731,
    record=_document,
    not_found=FlowNotFound,
)

"""The ``alerts`` table: one row per alert episode, written from ``fleet.alerts.v1``.

Idempotent on ``alert_id``: a *fired* record inserts the row (a repeat does nothing); a *cleared*
record sets ``cleared_at`` once (or inserts the whole row, should it come first).

Operators acknowledge a row with :meth:`AlertStore.acknowledge`, the one acknowledgement: the
API's ``POST /api/v1/alerts/{id}/ack`` (the canonical route, :mod:`api.routes.alerts`) and the
operator page's button (``streams.web``) both call it. Who acknowledged (``by``) follows one rule,
:func:`check_acknowledger`; acknowledging twice keeps the first acknowledgement.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from connectors.postgres.errors import unavailable_as_error
from schemas.errors import FleetError
from schemas.flows import AlertEvent

_COLUMNS = (
    "alert_id::text AS alert_id, rule_id, rule_version, rule_name, device_id, severity, "
    "started_at, fired_at, cleared_at, value, clear_value, message, fired_event_id, "
    "cleared_event_id, acknowledged_at, acknowledged_by"
)
_INSERT = """
    INSERT INTO alerts (alert_id, rule_id, rule_version, rule_name, device_id, severity,
                        started_at, fired_at, cleared_at, value, clear_value, message,
                        fired_event_id, cleared_event_id)
    VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""
_FIRED = _INSERT + " ON CONFLICT (alert_id) DO NOTHING"
_CLEARED = (
    _INSERT
    + """ ON CONFLICT (alert_id) DO UPDATE SET cleared_at = EXCLUDED.cleared_at,
            clear_value = EXCLUDED.clear_value, cleared_event_id = EXCLUDED.cleared_event_id,
            updated_at = now()
          WHERE alerts.cleared_at IS NULL"""
)


ACKNOWLEDGER_MAX_LENGTH = 128
ACKNOWLEDGER_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Who acknowledges: 1 to 128 characters, no control characters."""
_ACKNOWLEDGER = re.compile(ACKNOWLEDGER_PATTERN)


class InvalidAcknowledger(FleetError):
    """``by`` is not a name an acknowledgement can carry."""


def check_acknowledger(by: str) -> str:
    """``by`` when it may name who acknowledged; raises :class:`InvalidAcknowledger`."""
    if not 1 <= len(by) <= ACKNOWLEDGER_MAX_LENGTH or not _ACKNOWLEDGER.fullmatch(by):
        raise InvalidAcknowledger(
            f"expected 1 to {ACKNOWLEDGER_MAX_LENGTH} characters, no control characters"
        )
    return by


class AlertNotFound(FleetError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"alert {alert_id} does not exist")
        self.alert_id = alert_id


class AlertRow(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: str
    rule_id: str
    rule_version: int
    rule_name: str
    device_id: str
    severity: str
    state: Literal["active", "cleared"]
    started_at: datetime
    fired_at: datetime
    cleared_at: datetime | None
    value: float | None
    clear_value: float | None
    message: str
    fired_event_id: str
    cleared_event_id: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None


@dataclass(frozen=True)
class AlertQuery:
    device_id: str | None = None
    rule_id: str | None = None
    state: Literal["active", "cleared"] | None = None
    severity: str | None = None
    acknowledged: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class AlertPage:
    items: list[AlertRow]
    total: int


class AlertStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(self, events: Sequence[AlertEvent]) -> None:
        """Store the transitions (one transaction); raises on any error (the caller retries)."""
        fired = [_args(event) for event in events if event.state == "fired"]
        cleared = [_args(event) for event in events if event.state == "cleared"]
        async with self._pool.acquire() as conn, conn.transaction():
            if fired:
                await conn.executemany(_FIRED, fired)
            if cleared:
                await conn.executemany(_CLEARED, cleared)

    async def list(self, query: AlertQuery) -> AlertPage:
        where, args = _filters(query)
        n = len(args)
        async with unavailable_as_error():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM alerts{where} ORDER BY fired_at DESC, alert_id "  # noqa: S608
                f"LIMIT ${n + 1} OFFSET ${n + 2}",
                *args,
                query.limit,
                query.offset,
            )
            total = await self._pool.fetchval(f"SELECT count(*) FROM alerts{where}", *args)  # noqa: S608
        return AlertPage([_row(row) for row in rows], int(total))

    async def get(self, alert_id: str) -> AlertRow | None:
        if not _is_uuid(alert_id):
            return None
        async with unavailable_as_error():
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM alerts WHERE alert_id = $1::uuid",  # noqa: S608
                alert_id,
            )
        return None if row is None else _row(row)

    async def acknowledge(self, alert_id: str, by: str) -> AlertRow:
        """Mark the alert acknowledged by ``by`` (the first acknowledgement is kept)."""
        check_acknowledger(by)
        if not _is_uuid(alert_id):
            raise AlertNotFound(alert_id)
        async with unavailable_as_error():
            row = await self._pool.fetchrow(
                "UPDATE alerts SET acknowledged_at = coalesce(acknowledged_at, now()), "  # noqa: S608
                "acknowledged_by = coalesce(acknowledged_by, $2), updated_at = now() "
                f"WHERE alert_id = $1::uuid RETURNING {_COLUMNS}",
                alert_id,
                by,
            )
        if row is None:
            raise AlertNotFound(alert_id)
        return _row(row)


def _filters(query: AlertQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.device_id is not None:
        clauses.append(f"device_id = {arg(query.device_id)}")
    if query.rule_id is not None:
        clauses.append(f"rule_id = {arg(query.rule_id)}")
    if query.severity is not None:
        clauses.append(f"severity = {arg(query.severity)}")
    if query.state is not None:
        clauses.append(
            "cleared_at IS NULL" if query.state == "active" else "cleared_at IS NOT NULL"
        )
    if query.acknowledged is not None:
        clauses.append(f"acknowledged_at IS {'NOT ' if query.acknowledged else ''}NULL")
    if query.since is not None:
        clauses.append(f"fired_at >= {arg(query.since)}")
    if query.until is not None:
        clauses.append(f"fired_at < {arg(query.until)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _args(event: AlertEvent) -> tuple[Any, ...]:
    cleared = event.state == "cleared"
    return (
        event.alert_id,
        event.rule_id,
        event.rule_version,
        event.rule_name,
        event.device_id,
        event.severity,
        event.started_at,
        event.fired_at,
        event.cleared_at,
        None if cleared else event.value,
        event.value if cleared else None,
        event.message,
        event.event_id,
        event.event_id if cleared else None,
    )


def _row(row: asyncpg.Record) -> AlertRow:
    values = dict(row)
    values["state"] = "active" if row["cleared_at"] is None else "cleared"
    return msgspec.convert(values, AlertRow)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True

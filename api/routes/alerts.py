"""Alerts over HTTP: ``/api/v1/alerts`` (admin token), newest first, with filters, and the
operator's acknowledgement. Rows come from ``fleet.alerts.v1`` through the alerts sink, so an
alert shows here within a second or so of its transition.

``POST /api/v1/alerts/{alert_id}/ack`` is the canonical acknowledgement. The operator page's
button (``POST /ops/api/alerts/{alert_id}/ack`` on the worker's web server, behind its login) is
not a second implementation: it calls the same :meth:`~connectors.postgres.alerts.AlertStore.
acknowledge`, which checks ``by`` with the same rule (:func:`~connectors.postgres.alerts.
check_acknowledger`) and keeps the first acknowledgement. The page cannot call this route itself:
it is served from another origin and holds a session cookie, not the admin token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Query

from api.auth import require_admin
from api.deps import SettingsDep
from api.flows import AlertStoreDep
from api.problems import ProblemError
from api.registry_problems import not_found, unavailable
from connectors.postgres.alerts import (
    ACKNOWLEDGER_MAX_LENGTH,
    ACKNOWLEDGER_PATTERN,
    AlertNotFound,
    AlertQuery,
    AlertRow,
)
from connectors.postgres.errors import DatabaseUnavailable
from schemas.errors import one_line
from schemas.flows import FLOW_ID_PATTERN
from schemas.readings import DEVICE_ID_PATTERN

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], dependencies=[Depends(require_admin)])

_DEVICE = DEVICE_ID_PATTERN.replace("\\Z", "$")
_RULE = FLOW_ID_PATTERN.replace("\\Z", "$")


@router.get("")
async def list_alerts(
    store: AlertStoreDep,
    settings: SettingsDep,
    device_id: Annotated[str | None, Query(pattern=_DEVICE)] = None,
    rule_id: Annotated[str | None, Query(pattern=_RULE)] = None,
    state: Literal["active", "cleared"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    acknowledged: bool | None = None,
    since: Annotated[datetime | None, Query(description="fired at or after")] = None,
    until: Annotated[datetime | None, Query(description="fired before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Alert episodes (one per fire), newest first."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ProblemError(
                422,
                "Invalid request",
                f"{name} needs a time zone",
                errors=[{"field": name, "message": "add a time zone", "type": "timezone"}],
            )
    query = AlertQuery(
        device_id, rule_id, state, severity, acknowledged, since, until, limit, offset
    )
    try:
        page = await store.list(query)
    except DatabaseUnavailable as exc:
        raise unavailable(exc, settings) from exc
    return {
        "items": [_view(row) for row in page.items],
        "total": page.total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{alert_id}")
async def get_alert(alert_id: str, store: AlertStoreDep, settings: SettingsDep) -> dict[str, Any]:
    try:
        row = await store.get(alert_id)
    except DatabaseUnavailable as exc:
        raise unavailable(exc, settings) from exc
    if row is None:
        raise _not_found(alert_id)
    return _view(row)


@router.post("/{alert_id}/ack")
async def acknowledge(
    alert_id: str,
    store: AlertStoreDep,
    settings: SettingsDep,
    by: Annotated[
        str, Query(min_length=1, max_length=ACKNOWLEDGER_MAX_LENGTH, pattern=ACKNOWLEDGER_PATTERN)
    ] = "admin",
) -> dict[str, Any]:
    """Acknowledge the alert (``?by=<operator>``); acknowledging again keeps the first one."""
    try:
        row = await store.acknowledge(alert_id, by)
    except AlertNotFound as exc:
        raise _not_found(alert_id) from exc
    except DatabaseUnavailable as exc:
        raise unavailable(exc, settings) from exc
    return _view(row)


def _view(row: AlertRow) -> dict[str, Any]:
    shown: dict[str, Any] = msgspec.to_builtins(row)
    return shown


def _not_found(alert_id: str) -> ProblemError:
    return not_found(f"alert {one_line(alert_id)} does not exist", "alert_id", "no such alert")

"""``fleetstream alerts list|ack``: the alert episodes in Postgres, and their acknowledgement.

Talks to Postgres directly (no API needed), through
:meth:`~connectors.postgres.alerts.AlertStore.acknowledge`: the one acknowledgement, which the
admin API's ``POST /api/v1/alerts/{id}/ack`` and the operator page also call, so the rule for
who acknowledged and "the first acknowledgement is kept" hold the same everywhere.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

import msgspec
import typer

from cli.console import operator_errors
from cli.registries import print_json
from connectors.postgres.alerts import AlertQuery, AlertRow, AlertStore
from connectors.postgres.pool import create_pool
from schemas.settings import get_settings

T = TypeVar("T")

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts raised by flows: list, ack.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def run(action: Callable[[AlertStore], Awaitable[T]]) -> T:
    """``action`` on the alert store; operator errors print one line and exit 1."""

    async def opened() -> T:
        pool = await create_pool(get_settings().postgres, min_size=0, max_size=2)
        try:
            return await action(AlertStore(pool))
        finally:
            await pool.close()

    with operator_errors():
        return asyncio.run(opened())


@alerts_app.command("list")
def list_alerts(
    device: Annotated[str | None, typer.Option(help="only this device_id")] = None,
    rule: Annotated[str | None, typer.Option(help="only this rule (flow id)")] = None,
    state: Annotated[str | None, typer.Option(help="active or cleared")] = None,
    severity: Annotated[str | None, typer.Option(help="info, warning or critical")] = None,
    acknowledged: Annotated[
        bool | None, typer.Option("--acknowledged/--unacknowledged", help="only these")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="fired at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="fired before (ISO 8601)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Alert episodes, newest first."""
    if state not in (None, "active", "cleared"):
        raise typer.BadParameter("--state must be active or cleared")
    chosen: Literal["active", "cleared"] | None = state  # type: ignore[assignment]
    query = AlertQuery(
        device, rule, chosen, severity, acknowledged, _aware(since), _aware(until), limit
    )
    page = run(lambda store: store.list(query))
    if as_json:
        print_json({"items": [msgspec.to_builtins(row) for row in page.items], "total": page.total})
        return
    for row in page.items:
        typer.echo(_line(row))
    typer.echo(f"{len(page.items)} of {page.total} alerts")


@alerts_app.command("ack")
def ack(
    alert_ids: Annotated[list[str], typer.Argument(help="alert ids (from `alerts list`)")],
    by: Annotated[str | None, typer.Option(help="who acknowledges (default: your user)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge alerts; one acknowledged before keeps its first acknowledgement."""
    who = by or getpass.getuser()

    async def acknowledge(store: AlertStore) -> list[AlertRow]:
        return [await store.acknowledge(alert_id, who) for alert_id in alert_ids]

    rows = run(acknowledge)  # an unknown id exits 1 naming it (AlertNotFound)
    if as_json:
        print_json([msgspec.to_builtins(row) for row in rows])
        return
    for row in rows:
        when = row.acknowledged_at.isoformat(timespec="seconds") if row.acknowledged_at else "-"
        typer.echo(f"{row.alert_id} acknowledged by {row.acknowledged_by} at {when}")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _line(row: AlertRow) -> str:
    acked = f"acked by {row.acknowledged_by}" if row.acknowledged_at else "unacknowledged"
    return (
        f"{row.fired_at.isoformat(timespec='seconds')}  {row.alert_id}  {row.severity:8} "
        f"{row.state:7} {row.rule_id:24} {row.device_id:24} {acked}  {row.message}"
    )

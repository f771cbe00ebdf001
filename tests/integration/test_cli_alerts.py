"""``fleetstream alerts list|ack`` on the real Postgres: rows as the alerts sink writes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from schemas.settings import Settings
from tests.integration.cli_tools import fleetstream, json_out

FIRED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _insert(db: asyncpg.Connection, device_id: str, minutes: int, cleared: bool) -> str:
    alert_id = str(uuid.uuid4())
    fired = FIRED + timedelta(minutes=minutes)
    await db.execute(
        "INSERT INTO alerts (alert_id, rule_id, rule_version, rule_name, device_id, severity,"
        " started_at, fired_at, cleared_at, value, message, fired_event_id)"
        " VALUES ($1::uuid, 'gas-above-500', 1, 'Gas above 500 ppm', $2, 'critical', $3, $3,"
        " $4, 650, 'gas high', $5)",
        alert_id,
        device_id,
        fired,
        fired + timedelta(minutes=1) if cleared else None,
        str(uuid.uuid4()),
    )
    return alert_id


async def test_alerts_are_listed_with_filters_and_acknowledged_once(
    pipeline: Settings, db: asyncpg.Connection
) -> None:
    device = f"cli-alerts-{uuid.uuid4().hex[:8]}"
    older = await _insert(db, device, 0, cleared=True)
    newer = await _insert(db, device, 5, cleared=False)

    listed = json_out(fleetstream(pipeline, "alerts", "list", "--device", device, "--json"))
    assert [row["alert_id"] for row in listed["items"]] == [newer, older]  # newest first
    assert [row["state"] for row in listed["items"]] == ["active", "cleared"]
    assert listed["total"] == 2 and all(r["acknowledged_at"] is None for r in listed["items"])
    active = json_out(
        fleetstream(pipeline, "alerts", "list", "--device", device, "--state", "active", "--json")
    )
    assert [row["alert_id"] for row in active["items"]] == [newer]

    acked = json_out(fleetstream(pipeline, "alerts", "ack", newer, "--by", "ops-anna", "--json"))
    assert acked[0]["acknowledged_by"] == "ops-anna" and acked[0]["acknowledged_at"] is not None
    again = json_out(fleetstream(pipeline, "alerts", "ack", newer, "--by", "ops-bob", "--json"))
    assert again[0]["acknowledged_by"] == "ops-anna"  # the first acknowledgement is kept
    assert again[0]["acknowledged_at"] == acked[0]["acknowledged_at"]
    stored = await db.fetchrow(
        "SELECT acknowledged_by FROM alerts WHERE alert_id = $1::uuid", newer
    )
    assert stored is not None and stored["acknowledged_by"] == "ops-anna"

    pending = json_out(
        fleetstream(pipeline, "alerts", "list", "--device", device, "--unacknowledged", "--json")
    )
    assert [row["alert_id"] for row in pending["items"]] == [older]
    lines = fleetstream(pipeline, "alerts", "list", "--device", device).stdout.splitlines()
    assert lines[-1] == "2 of 2 alerts" and "acked by ops-anna" in lines[0]

    unknown = str(uuid.uuid4())
    refused = fleetstream(pipeline, "alerts", "ack", unknown, code=1)
    assert f"alert {unknown} does not exist" in refused.stderr

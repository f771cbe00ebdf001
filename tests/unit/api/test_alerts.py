"""The alert routes on a store double: the acknowledgement (the canonical one; the operator page
calls the same store method) and what an outage or an unknown alert answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from api.app import create_app
from connectors.postgres.alerts import AlertNotFound, AlertRow, check_acknowledger
from connectors.postgres.errors import DatabaseUnavailable
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from tests import clock

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
ALERT_ID = "0b7e6a2c-3f1d-4c1a-9d6e-1f2a3b4c5d6e"


class AlertStoreDouble:
    def __init__(self) -> None:
        self.down = False
        self.acknowledged: list[tuple[str, str]] = []

    async def acknowledge(self, alert_id: str, by: str) -> AlertRow:
        check_acknowledger(by)
        if self.down:
            raise DatabaseUnavailable("Postgres is unavailable: gone")
        if alert_id != ALERT_ID:
            raise AlertNotFound(alert_id)
        self.acknowledged.append((alert_id, by))
        now = clock.now()
        row: dict[str, Any] = {
            "alert_id": alert_id,
            "rule_id": "gas",
            "rule_version": 1,
            "rule_name": "Gas",
            "device_id": "esp-1",
            "severity": "critical",
            "state": "active",
            "started_at": now,
            "fired_at": now,
            "cleared_at": None,
            "value": 600.0,
            "clear_value": None,
            "message": "high",
            "fired_event_id": "e1",
            "cleared_event_id": None,
            "acknowledged_at": now,
            "acknowledged_by": self.acknowledged[0][1],
        }
        return msgspec.convert(row, AlertRow)


@pytest.fixture
def store() -> AlertStoreDouble:
    return AlertStoreDouble()


@pytest.fixture
async def client(store: AlertStoreDouble) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings())
    app.state.alert_store = store
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        yield http


async def test_acknowledge_keeps_the_first_and_checks_who(
    client: httpx.AsyncClient, store: AlertStoreDouble
) -> None:
    path = f"/api/v1/alerts/{ALERT_ID}/ack"
    acked = await client.post(path, params={"by": "ops"}, headers=ADMIN)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "ops"
    again = await client.post(path, headers=ADMIN)  # by defaults to "admin"
    assert again.status_code == 200 and again.json()["acknowledged_by"] == "ops"
    for bad in ("", "x" * 129, "a\nb"):
        refused = await client.post(path, params={"by": bad}, headers=ADMIN)
        assert refused.status_code == 422, bad
    assert store.acknowledged == [(ALERT_ID, "ops"), (ALERT_ID, "admin")]


async def test_an_unknown_alert_is_404_and_an_outage_503(
    client: httpx.AsyncClient, store: AlertStoreDouble
) -> None:
    missing = await client.post("/api/v1/alerts/nope/ack", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.json()["errors"][0] == {
        "field": "alert_id",
        "message": "no such alert",
        "type": "not_found",
    }
    store.down = True
    down = await client.post(f"/api/v1/alerts/{ALERT_ID}/ack", headers=ADMIN)
    assert down.status_code == 503
    assert down.headers["retry-after"] == str(Settings().api.retry_after_s)

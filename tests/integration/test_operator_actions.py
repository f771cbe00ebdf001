"""The operator views' newer pages and actions in a real browser on a worker of the real stack,
with a served API behind the actions: trends (SVG drawn from the worker's samples), dead-letter
filters and bulk replay with its preview, a device disabled, enabled and given a new token,
a flow disabled, enabled and dry-run, and the alert history with filters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import BrowserContext, Dialog, Page

from schemas.envelopes import encode_item, raw_envelope
from schemas.settings import DEV_ADMIN_TOKEN, MetricsSettings, Settings
from tests.factories import device_ids, gas_alert_rule, raw_event
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import produce
from tests.integration.processes import ApiProcess, WorkerProcess
from tests.integration.stream_core import core_settings
from tests.integration.test_operator_views import (
    SEEN_S,
    START_S,
    browser,  # noqa: F401 - the fixture
    chromium,  # noqa: F401 - the fixture
    keep_posting,
    screenshot,
    shown,
    text_of,
    wait_flow_loaded,
)
from tests.support import free_port, wait_until

API = "/api/v1/admin"


@pytest.fixture
def ops_stack(pipeline: Settings, tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A served API (the views' actions go through it) and a worker with its web server."""
    settings = core_settings(pipeline)
    api = settings.api.model_copy(update={"port": free_port()})
    worker = settings.worker.model_copy(
        update={
            "web_enabled": True,
            "web_port": free_port(),
            "admin_api_url": f"http://127.0.0.1:{api.port}",
        }
    )
    metrics = MetricsSettings(access="token")
    settings = settings.model_copy(update={"api": api, "worker": worker, "metrics": metrics})
    api_process = ApiProcess(settings, tmp_path / "api.log")
    api_process.start()
    process = WorkerProcess(settings, tmp_path / "worker.log")
    process.start()
    yield settings, process
    process.stop()
    api_process.stop()


async def log_in(page: Page, base: str, worker: WorkerProcess) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def serving() -> bool:
            try:
                return (await client.get("/ops/api/overview")).status_code == 401
            except httpx.TransportError:
                return False

        await wait_until(serving, timeout_s=START_S, what=lambda: worker.log_tail())
    await page.goto(f"{base}/ops/login?next=/ops/trends")
    await page.fill("#token", DEV_ADMIN_TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/ops/trends")


async def until_text(page: Page, selector: str, wanted: str, worker: WorkerProcess) -> str:
    async def has() -> bool:
        return wanted in await text_of(page, selector)

    await wait_until(
        has, timeout_s=SEEN_S, what=lambda: f"{wanted!r} in {selector}\n{worker.log_tail()}"
    )
    return await text_of(page, selector)


def letters_of(settings: Settings, device: str, count: int) -> list[str]:
    """``count`` readings of ``device`` straight onto the raw topic (the edge would refuse a
    disabled device: here validate dead-letters them); their event ids."""
    events = [
        raw_event({"device_id": device, "sensors": {"pir": {"motion_detected": True}}})
        for _ in range(count)
    ]
    produce(
        settings.kafka.bootstrap_servers,
        settings.topics.raw,
        [(None, raw_envelope([encode_item(event)])) for event in events],
    )
    return [event.event_id for event in events]


async def test_trends_letters_devices_flows_and_alert_history_in_a_browser(
    ops_stack: tuple[Settings, WorkerProcess],
    fleet: Fleet,
    browser: BrowserContext,  # noqa: F811 - the fixture
    db: asyncpg.Connection,
) -> None:
    settings, worker = ops_stack
    base = f"http://127.0.0.1:{settings.worker.web_port}"
    ids = device_ids(5, "act")
    posting, target, other, alerting = ids[:2], ids[2], ids[3], ids[4]
    await fleet.enroll(ids)
    page = await browser.new_page()
    stop = asyncio.Event()
    traffic = asyncio.create_task(keep_posting(fleet, posting, stop))
    try:
        await log_in(page, base, worker)

        # Trends: the worker's samples drawn as SVG, and the page says what a restart means.
        assert "restarted worker starts a new history" in await text_of(page, "#trends-note")
        async with httpx.AsyncClient(base_url=base, headers=ADMIN, timeout=10) as client:

            async def flowing() -> bool:
                points = (await client.get("/ops/api/trends")).json()["points"]
                return len(points) >= 3 and any(
                    point["readings_in_per_s"] > 0 and point["latency_p99_s"] is not None
                    for point in points
                )

            await wait_until(flowing, timeout_s=START_S, what=lambda: worker.log_tail())
        await page.reload()
        line = '#chart-readings polyline[data-series="readings_in_per_s"]'
        await shown(page, line, "the readings line", worker)
        await shown(page, '#chart-latency polyline[data-series="latency_p99_s"]', "p99", worker)
        await screenshot(page, "trends")

        # Dead letters: filtered by device and reason; bulk replay after its preview.
        for device in (target, other):
            changed = await fleet.client.patch(
                f"{API}/devices/{device}", json={"is_enabled": False}, headers=ADMIN
            )
            assert changed.status_code == 200, changed.text
        mine = letters_of(settings, target, 3)
        letters_of(settings, other, 1)
        await page.goto(f"{base}/ops/deadletters")
        await page.fill("#device_id", target)
        await page.fill("#reason", "DISABLED")
        await page.click("#letter-filter button[type=submit]")
        for event_id in mine:
            await shown(page, f'#letters tr[data-event-id="{event_id}"]', event_id, worker)
        assert await until_text(page, "#letters-note", "3 letters match", worker)
        assert await page.query_selector(f'#letters tr[data-device-id="{other}"]') is None
        await page.fill("#since", "2099-01-01T00:00")
        await page.click("#letter-filter button[type=submit]")
        await until_text(page, "#letters-note", "0 letters match", worker)
        await page.fill("#since", "")
        enabled = await fleet.client.patch(
            f"{API}/devices/{target}", json={"is_enabled": True}, headers=ADMIN
        )
        assert enabled.status_code == 200, enabled.text
        await page.click("#bulk-preview")
        await until_text(page, "#bulk-summary", "3 letters match", worker)
        assert len(await page.query_selector_all("#bulk-sample tbody tr")) == 3
        await page.click("#bulk-confirm")
        await until_text(page, "#bulk-result", "replayed 3 letters (3 readings)", worker)
        await until_text(page, "#letters-note", "3 letters match", worker)  # still listed
        await screenshot(page, "deadletters-bulk")

        async def stored() -> bool:
            rows = await db.fetch(
                "SELECT event_id::text AS id FROM readings WHERE device_id = $1", target
            )
            return sorted(row["id"] for row in rows) == sorted(mine)

        await wait_until(stored, timeout_s=SEEN_S, what=lambda: worker.log_tail())

        # A device disabled and enabled again, and a new token shown once that works.
        await page.goto(f"{base}/ops/devices/{other}")
        await shown(page, '#toggle-enabled:text-is("enable")', "disabled above", worker)
        await page.click("#toggle-enabled")
        await until_text(page, "#action-result", "enabled", worker)
        assert await db.fetchval("SELECT is_enabled FROM devices WHERE device_id=$1", other)
        await shown(page, '#toggle-enabled:text-is("disable")', "enabled again", worker)
        await page.click("#toggle-enabled")
        await until_text(page, "#action-result", "disabled", worker)
        assert not await db.fetchval("SELECT is_enabled FROM devices WHERE device_id=$1", other)

        async def accept(dialog: Dialog) -> None:
            await dialog.accept()

        page.on("dialog", accept)
        await page.goto(f"{base}/ops/devices/{target}")
        await shown(page, '#toggle-enabled:text-is("disable")', "the registry entry", worker)
        await page.click("#rotate-token")

        async def token_shown() -> bool:
            return bool(await text_of(page, "#new-token-value"))

        await wait_until(token_shown, timeout_s=SEEN_S, what=lambda: worker.log_tail())
        token = await text_of(page, "#new-token-value")
        assert token and token != fleet.tokens[target]
        await screenshot(page, "device-actions")
        fleet.tokens[target] = token
        body = {"device_id": target, "sensors": {"pir": {"motion_detected": False}}}

        async def new_token_works() -> bool:  # the API's device cache learns it within seconds
            return (await fleet.post(body)).status_code == 202

        await wait_until(new_token_works, timeout_s=SEEN_S, what="the rotated token accepted")

        # Flows: disabled and enabled in the registry table; a dry run shows its trace.
        flow_id = f"act-gas-{alerting[-12:]}"
        rule = gas_alert_rule("Gas above 500 (operator actions test)", alerting)
        created = await fleet.client.post(
            f"{API}/flows", json={"flow_id": flow_id, "definition": rule}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        await page.goto(f"{base}/ops/flows")
        row = f'#flow-registry tr[data-flow-id="{flow_id}"]'
        await until_text(page, f"{row} td.enabled", "yes", worker)
        await page.click(f"{row} button.toggle")
        await until_text(page, f"{row} td.enabled", "no", worker)
        assert not await db.fetchval("SELECT enabled FROM flows WHERE flow_id=$1", flow_id)
        await page.click(f"{row} button.toggle")
        await until_text(page, f"{row} td.enabled", "yes", worker)
        await page.select_option("#dry-run-flow", flow_id)
        reading = (
            f'{{"device_id": "{alerting}", "sensors": {{"mq134": {{"gas_concentration": 650}}}}}}'
        )
        await page.fill("#dry-run-reading", reading)
        await page.click("#dry-run button[type=submit]")
        trace = await until_text(page, "#dry-run-result", '"trace"', worker)
        assert '"fires_from_idle": true' in trace
        await page.fill("#dry-run-reading", '{"device_id": "x", "sensors": {"mq134": {}}}')
        await page.click("#dry-run button[type=submit]")
        await until_text(page, "#dry-run-result", "Dry run refused", worker)
        await screenshot(page, "flows-actions")

        # Alert history: the fired alert, found by device; not among the cleared ones.
        await wait_flow_loaded(worker, flow_id)
        fired = await fleet.post(
            {"device_id": alerting, "sensors": {"mq134": {"gas_concentration": 700.0}}}
        )
        assert fired.status_code == 202, fired.text
        await page.goto(f"{base}/ops/alerts")
        await page.fill("#device_id", alerting)
        await page.click("#alert-filter button[type=submit]")
        history_row = f'#alert-history tr:has(td:text-is("{alerting}"))'
        text = await shown(page, history_row, "the fired alert", worker)
        assert "critical" in text and "active" in text
        await until_text(page, "#alerts-note", "1 alerts match", worker)
        await page.select_option("#state", "cleared")
        await page.click("#alert-filter button[type=submit]")
        await until_text(page, "#alerts-note", "0 alerts match", worker)
        await screenshot(page, "alerts")
    finally:
        stop.set()
        await traffic

    # Bad input is refused naming the field; the actions need the admin token.
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        refused = await client.post(f"/ops/api/devices/{target}/rotate-token", json={})
        assert refused.status_code == 401
        bad = await client.get("/ops/api/alerts/history?since=yesterday", headers=ADMIN)
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "since"
        stale = await client.post(
            "/ops/api/deadletters/replay/bulk",
            json={"device_id": target, "expected": 99},
            headers=ADMIN,
        )
        assert stale.status_code == 409
        assert stale.json()["count"] == 3

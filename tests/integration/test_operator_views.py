"""The operator views in a real browser (Debian's chromium through Playwright) on a worker of
the real stack, with readings flowing: login, overview, devices, a device, dead letters with
replay, flows and alerts with acknowledge. ``make screenshots`` photographs every page into
docs/screenshots/ (``FLEET_SCREENSHOTS_DIR``); other runs take no pictures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from cli.stack import installer
from connectors.kafka.partitioner import partition_for
from schemas.envelopes import encode_item, raw_envelope
from schemas.settings import DEV_ADMIN_TOKEN, MetricsSettings, Settings
from tests.factories import device_ids, gas_alert_rule, raw_event
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import produce
from tests.integration.processes import PROJECT_ROOT, FrontProcess, WorkerProcess
from tests.integration.stream_core import core_settings
from tests.support import free_port, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_DIR = os.environ.get("FLEET_SCREENSHOTS_DIR")
"""Where ``make screenshots`` has the pages photographed (docs/screenshots); unset, a test run
takes no pictures (and never rewrites the committed ones)."""
START_S = 120.0
"""A fresh worker joins its group, recovers its tables and reads the registries first."""
SEEN_S = 60.0


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get like the stack's packages when missing."""
    requirement = installer.executable(CHROMIUM, "chromium")
    installer.ensure([requirement], PROJECT_ROOT / ".stack" / "logs" / "apt.log", print)
    if SCREENSHOTS_DIR:
        Path(SCREENSHOTS_DIR).mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture
def ops_worker(pipeline: Settings, tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A worker with its web server on a free port, a fast status timer, the memory store; and
    an MQTT front beside it, which the overview shows."""
    settings = core_settings(pipeline)
    worker = settings.worker.model_copy(update={"web_enabled": True, "web_port": free_port()})
    front = settings.mqtt_front.model_copy(update={"port": free_port(), "health_port": free_port()})
    metrics = MetricsSettings(access="token")  # the views' test checks the token rule too
    settings = settings.model_copy(
        update={"worker": worker, "mqtt_front": front, "metrics": metrics}
    )
    front_process = FrontProcess(settings, tmp_path / "front.log")
    front_process.start()
    process = WorkerProcess(settings, tmp_path / "worker.log")
    process.start()
    yield settings, process
    process.stop()
    front_process.stop()


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[BrowserContext]:
    """A fresh headless chromium profile (no cookies: the test logs in itself)."""
    with tempfile.TemporaryDirectory(prefix="fleet-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 900},
            )
            try:
                yield context
            finally:
                await context.close()


async def text_of(page: Page, selector: str) -> str:
    element = await page.query_selector(selector)
    return "" if element is None else (await element.text_content() or "").strip()


async def shown(page: Page, selector: str, what: str, worker: WorkerProcess) -> str:
    """Wait until the page (refreshing itself) shows ``selector``; its text."""

    async def present() -> bool:
        return await page.query_selector(selector) is not None

    await wait_until(present, timeout_s=SEEN_S, what=lambda: f"{what}\n{worker.log_tail()}")
    return await text_of(page, selector)


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS_DIR:
        await page.screenshot(path=str(Path(SCREENSHOTS_DIR) / f"{name}.png"), full_page=True)


def number(text: str) -> float:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return 0.0


async def keep_posting(fleet: Fleet, devices: list[str], stop: asyncio.Event) -> int:
    """Readings from ``devices`` every 0.2 s until ``stop`` (traffic for the overview)."""
    sent = 0
    while not stop.is_set():
        for device in devices:
            body = {"device_id": device, "sensors": {"pir": {"motion_detected": sent % 2 == 0}}}
            answer = await fleet.post(body)
            assert answer.status_code == 202, answer.text
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.2)
    return sent


async def wait_flow_loaded(worker: WorkerProcess, flow_id: str) -> None:
    async def loaded() -> bool:
        return any(
            "flows in force:" in line and flow_id in line
            for line in worker.log_tail(2000).splitlines()
        )

    await wait_until(
        loaded, timeout_s=START_S, what=lambda: f"{flow_id} loaded\n{worker.log_tail()}"
    )


async def metrics_with_devices(base: str, worker: WorkerProcess) -> str:
    """The worker's /metrics (admin token) once it counts devices per state (from its first
    trend sample, every 10 s)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def scrape() -> str:
            answer = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
            )
            assert answer.status_code == 200
            return answer.text

        async def devices_counted() -> bool:
            return 'fleet_devices{state="online"}' in await scrape()

        await wait_until(devices_counted, timeout_s=SEEN_S, what=lambda: worker.log_tail())
        return await scrape()


async def test_operator_views_in_a_browser(
    ops_worker: tuple[Settings, WorkerProcess],
    fleet: Fleet,
    browser: BrowserContext,
    db: asyncpg.Connection,
) -> None:
    settings, worker = ops_worker
    base = f"http://127.0.0.1:{settings.worker.web_port}"
    ids = device_ids(5, "ops")  # one run prefix: ops-<run>-000 ...
    online, quiet, alerting = ids[:3], ids[3], ids[4]
    await fleet.enroll([*online, quiet, alerting])
    flow_id = f"ops-gas-{alerting[-12:]}"
    rule = gas_alert_rule("Gas above 500 (operator views test)", alerting)
    created = await fleet.client.post(
        "/api/v1/admin/flows", json={"flow_id": flow_id, "definition": rule}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    stop = asyncio.Event()
    traffic = asyncio.create_task(keep_posting(fleet, online, stop))
    page = await browser.new_page()
    try:
        # Unauthenticated: the API refuses, a page sends the browser to the login form.
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def serving() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/ops/api/overview")).status_code == 401
                return False

            await wait_until(serving, timeout_s=START_S, what=lambda: worker.log_tail())
            refused = await client.get("/ops/api/overview")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert (await client.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert (await client.get("/ops/api/devices", headers=wrong)).status_code == 401
        await page.goto(f"{base}/ops/")
        assert page.url.startswith(f"{base}/ops/login")
        await page.fill("#token", "not-the-token")
        await page.click("button[type=submit]")
        assert "not the admin token" in await text_of(page, "#login-message")
        await screenshot(page, "login")
        await page.fill("#token", DEV_ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/ops/")

        # Overview: non-zero rates and the devices that post, online.
        async def overview_live() -> bool:
            return (
                number(await text_of(page, "#readings-in")) > 0
                and number(await text_of(page, "#readings-out")) > 0
                and await text_of(page, "#devices-online") == str(len(online))
            )

        await wait_until(
            overview_live,
            timeout_s=START_S,
            what=lambda: f"rates and {len(online)} devices online\n{worker.log_tail()}",
        )
        raw_in = await shown(
            page, f'#throughput tr[data-topic="{settings.topics.raw}"] td.in', "raw", worker
        )
        assert number(raw_in) > 0
        assert await text_of(page, "#devices-offline") == "0"
        assert settings.topics.curated in await text_of(page, "#workers")
        assert settings.worker.app_id in await text_of(page, "#lag")
        front_url = f"http://127.0.0.1:{settings.mqtt_front.health_port}"
        front_row = f'#fronts tr[data-front="{front_url}"]'

        async def front_up() -> bool:  # the front's own /health answer, through the worker
            return "ok (pid" in await text_of(page, front_row)

        await wait_until(front_up, timeout_s=START_S, what=lambda: f"the front row {front_url}")
        await screenshot(page, "overview")

        # A device page shows the reading just posted (Postgres), its status (routed lookup).
        # (A device outside the traffic: the page lists the newest 20 readings.)
        posted = await fleet.post(
            {"device_id": alerting, "sensors": {"mq134": {"gas_concentration": 123.25}}}
        )
        assert posted.status_code == 202, posted.text
        (event_id,) = posted.json()["event_ids"]
        await page.goto(f"{base}/ops/devices/{alerting}")
        row = await shown(
            page, f'#readings tr[data-event-id="{event_id}"]', "the posted reading", worker
        )
        assert "123.25" in row
        # Status batches are up to a second long, so the row can be on the page first.
        await shown(page, '#device-status:text-is("online")', "the device online", worker)
        await screenshot(page, "device")
        await page.goto(f"{base}/ops/devices?q={online[0][:-3]}")
        listed = await shown(
            page, f'#devices tr[data-device-id="{quiet}"]', "the quiet device", worker
        )
        assert "never seen" in listed
        for device in online:
            assert "online" in await shown(
                page, f'#devices tr[data-device-id="{device}"]', device, worker
            )
        await screenshot(page, "devices")

        # A bad reading (a disabled device's, already in flight) is a dead letter; replay works
        # once the device is enabled again.
        path = f"/api/v1/admin/devices/{quiet}"
        disabled = await fleet.client.patch(path, json={"is_enabled": False}, headers=ADMIN)
        assert disabled.status_code == 200, disabled.text
        event = raw_event({"device_id": quiet, "sensors": {"pir": {"motion_detected": True}}})
        produce(
            settings.kafka.bootstrap_servers,
            settings.topics.raw,
            [(None, raw_envelope([encode_item(event)]))],
        )
        await page.goto(f"{base}/ops/deadletters")
        letter = f'#letters tr[data-event-id="{event.event_id}"]'
        text = await shown(page, letter, "the dead letter", worker)
        assert "validate" in text and "disabled" in text
        assert "validate" in await text_of(page, '#letter-stages tr[data-stage="validate"]')
        enabled = await fleet.client.patch(path, json={"is_enabled": True}, headers=ADMIN)
        assert enabled.status_code == 200, enabled.text
        await page.click(f"{letter} button.replay")

        async def replayed() -> bool:
            return "replayed 1 reading" in await text_of(page, f"{letter} .result")

        await wait_until(replayed, timeout_s=SEEN_S, what=lambda: worker.log_tail())
        await screenshot(page, "deadletters")

        async def stored() -> bool:
            rows = await db.fetch(
                "SELECT event_id::text AS id FROM readings WHERE device_id = $1", quiet
            )
            return [row["id"] for row in rows] == [event.event_id]

        await wait_until(stored, timeout_s=SEEN_S, what=lambda: worker.log_tail())

        # Flows and alerts: the rule with its runs, the alert it fired, acknowledged here.
        await wait_flow_loaded(worker, flow_id)
        fired = await fleet.post(
            {"device_id": alerting, "sensors": {"mq134": {"gas_concentration": 700.0}}}
        )
        assert fired.status_code == 202, fired.text
        await page.goto(f"{base}/ops/flows")
        alert_row = f'#alerts tr:has(td:text-is("{alerting}"))'
        await shown(page, alert_row, "the open alert", worker)
        flow_row = f'#flows tr[data-flow-id="{flow_id}"]'

        async def counted() -> bool:
            return number(await text_of(page, f"{flow_row} td.runs")) >= 1

        await wait_until(counted, timeout_s=SEEN_S, what=lambda: worker.log_tail())
        await page.fill("#ack-by", "ops-test")
        await page.click(f"{alert_row} button.ack")

        async def acknowledged() -> bool:
            return "ops-test" in await text_of(page, f"{alert_row} td.acknowledged")

        await wait_until(acknowledged, timeout_s=SEEN_S, what=lambda: worker.log_tail())
        row_ack = await db.fetchval(
            "SELECT acknowledged_by FROM alerts WHERE device_id = $1", alerting
        )
        assert row_ack == "ops-test"
        await screenshot(page, "flows")
    finally:
        stop.set()
        sent = await traffic
    assert sent > 0

    # The worker's Prometheus metrics, with the admin token.
    body = await metrics_with_devices(base, worker)
    for line in (
        f'fleet_agent_events_total{{agent="validate",topic="{settings.topics.raw}"}}',
        'fleet_dead_letters_total{stage="validate"}',
        'fleet_sink_write_seconds_count{sink="postgres"}',
        'fleet_table_keys{table="device-status"}',
        "fleet_worker_ready 1.0",
        'fleet_devices{state="online"}',
        "fleet_reading_to_row_seconds_count",
        f'fleet_consumer_lag{{group="{settings.worker.app_id}",partition="0",'
        f'topic="{settings.topics.raw}"}}',
    ):
        assert line in body, line
    assert "_created" not in body


async def test_any_worker_answers_for_the_app_and_routes_a_device_to_its_owner(
    pipeline: Settings, fleet: Fleet, tmp_path: Path, worker_factory: list[WorkerProcess]
) -> None:
    """Two workers share the partitions: each one's overview counts every device, and a
    device's status comes from the worker owning its key, through whichever is asked."""
    settings = core_settings(pipeline)
    urls = []
    for n in range(2):
        web = settings.worker.model_copy(update={"web_enabled": True, "web_port": free_port()})
        process = WorkerProcess(settings.model_copy(update={"worker": web}), tmp_path / f"w{n}.log")
        worker_factory.append(process)
        process.start()
        urls.append(f"http://127.0.0.1:{web.web_port}")
    devices = device_ids(8, "ops2")
    await fleet.enroll(devices)
    admin = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    async with httpx.AsyncClient(timeout=10, headers=admin) as client:

        async def both_counted() -> bool:
            for device in devices:  # readings while the group forms: every device online
                body = {"device_id": device, "sensors": {"pir": {"motion_detected": True}}}
                assert (await fleet.post(body)).status_code == 202
            for url in urls:
                with contextlib.suppress(httpx.TransportError):
                    answer = (await client.get(f"{url}/ops/api/overview")).json()
                    workers = answer["workers"]
                    if not (
                        len(workers) == 2
                        and all(worker["ready"] and worker["partitions"] for worker in workers)
                        and answer["devices"] == {"online": 8, "offline": 0, "complete": True}
                    ):
                        return False
                    continue
                return False
            return True

        await wait_until(
            both_counted,
            timeout_s=START_S,
            what=lambda: "\n".join(process.log_tail(20) for process in worker_factory),
        )
        overview = (await client.get(f"{urls[0]}/ops/api/overview")).json()
        owned = [set(w["partitions"][settings.topics.curated]) for w in overview["workers"]]
        assert owned[0] | owned[1] == {0, 1, 2} and not owned[0] & owned[1]
        owners = {w["url"]: p for w, p in zip(overview["workers"], owned, strict=True)}
        for device in devices:
            partition = partition_for(device, 3)
            (owner,) = [url for url, partitions in owners.items() if partition in partitions]
            for url in urls:  # asked anywhere, answered by the owner
                answer = await client.get(f"{url}/ops/api/devices/{device}/state")
                assert answer.status_code == 200, answer.text
                assert (answer.json()["worker"], answer.json()["online"]) == (owner, True)
        unknown = await client.get(f"{urls[1]}/ops/api/devices/ops2-nobody-000/state")
        assert unknown.status_code == 404 and unknown.json()["status"] == "unknown"


async def test_a_worker_neither_asks_nor_routes_to_a_worker_whose_url_it_does_not_trust(
    pipeline: Settings, fleet: Fleet, tmp_path: Path, worker_factory: list[WorkerProcess]
) -> None:
    """Two workers of one group on loopback; the second trusts only ``http://localhost:*``, so
    the first's advertised ``http://127.0.0.1:<port>`` gets neither its admin token nor its
    routed requests: it is shown as not trusted, and its devices answer 503 there."""
    settings = core_settings(pipeline)
    urls = []
    for n, trusted in enumerate([settings.worker.trusted_urls, "http://localhost:*"]):
        web = settings.worker.model_copy(
            update={"web_enabled": True, "web_port": free_port(), "trusted_urls": trusted}
        )
        process = WorkerProcess(settings.model_copy(update={"worker": web}), tmp_path / f"w{n}.log")
        worker_factory.append(process)
        process.start()
        urls.append(f"http://127.0.0.1:{web.web_port}")
    trusting, wary = urls
    devices = device_ids(8, "ops3")
    await fleet.enroll(devices)
    admin = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    async with httpx.AsyncClient(timeout=10, headers=admin) as client:

        async def group_formed() -> bool:
            for device in devices:
                body = {"device_id": device, "sensors": {"pir": {"motion_detected": True}}}
                assert (await fleet.post(body)).status_code == 202
            try:
                answer = (await client.get(f"{trusting}/ops/api/overview")).json()
            except httpx.TransportError:
                return False
            workers = answer["workers"]
            return (
                len(workers) == 2
                and all(worker["ready"] and worker["partitions"] for worker in workers)
                and answer["devices"] == {"online": 8, "offline": 0, "complete": True}
            )

        await wait_until(
            group_formed,
            timeout_s=START_S,
            what=lambda: "\n".join(process.log_tail(20) for process in worker_factory),
        )
        overview = (await client.get(f"{trusting}/ops/api/overview")).json()
        assert all(worker["trusted"] for worker in overview["workers"])
        owned = {
            w["url"]: set(w["partitions"][settings.topics.curated]) for w in overview["workers"]
        }

        seen_by_wary = (await client.get(f"{wary}/ops/api/overview")).json()
        rows = {worker["url"]: worker for worker in seen_by_wary["workers"]}
        assert rows[wary]["trusted"] and rows[wary]["ready"]
        assert rows[trusting]["trusted"] is False and not rows[trusting]["ready"]
        assert rows[trusting]["error"].startswith("not trusted: ")
        assert seen_by_wary["devices"]["complete"] is False

        for device in devices:
            owner = trusting if partition_for(device, 3) in owned[trusting] else wary
            state = await client.get(f"{wary}/ops/api/devices/{device}/state")
            routed = await client.get(f"{wary}/devices/{device}/status/")
            if owner == trusting:
                assert state.status_code == 503, state.text
                assert state.json()["status"] == "not trusted"
                assert routed.status_code == 503 and "not trusted" in routed.text
            else:
                assert state.status_code == 200 and routed.status_code == 200
            # the trusting worker asks and routes to the wary one as before
            from_trusting = await client.get(f"{trusting}/devices/{device}/status/")
            assert from_trusting.status_code == 200, from_trusting.text

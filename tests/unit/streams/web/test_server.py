"""The worker's web server as the operator views set it up, served by aiohttp in-process (no
Kafka: the consumer lag comes from a stub): what is public, what needs the token or the login
cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from yarl import URL

from agents.registry import build_worker_app
from schemas.settings import DEV_ADMIN_TOKEN, MetricsSettings, Settings
from streams.web import auth
from streams.web.lag import LagReader, PartitionLag
from tests.support import free_port, isolated


@pytest.fixture(params=["token"])
def metrics_access(request: pytest.FixtureRequest) -> str:
    """FLEET_METRICS__ACCESS of the server (``token`` unless a test asks for ``open``)."""
    return str(request.param)


@pytest.fixture
async def server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics_access: str
) -> AsyncIterator[str]:
    # /metrics reports consumer lag read from the broker; this test is about the web server.
    lag_row = PartitionLag("unit", "fleet.raw.v1", 0, 5, 0, 7)
    monkeypatch.setattr(LagReader, "__init__", lambda self, *args: None)
    monkeypatch.setattr(LagReader, "read", lambda self: [lag_row])
    nothing_there = f"http://127.0.0.1:{free_port()}"  # the admin API, for the actions
    settings = isolated(Settings(), "unit", tmp_path, web_enabled=True, admin_api_url=nothing_there)
    metrics = MetricsSettings(access=metrics_access)
    settings = settings.model_copy(update={"metrics": metrics})
    app, _ = build_worker_app(settings)
    web_app: Any = app.web.web_app  # type: ignore[attr-defined]
    test_server = TestServer(web_app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


async def test_without_the_token_pages_redirect_to_login_and_the_rest_is_refused(
    server: str,
) -> None:
    async with ClientSession() as client:
        page = await client.get(
            f"{server}/ops/devices?q=esp", headers={"Accept": "text/html"}, allow_redirects=False
        )
        assert page.status == 303
        assert page.headers["Location"] == "/ops/login?next=/ops/devices?q%3Desp"
        for path in ("/ops/api/overview", "/metrics", "/flows/", "/devices/x/status/"):
            refused = await client.get(f"{server}{path}")
            assert refused.status == 401, path
            assert refused.headers["WWW-Authenticate"] == f'Bearer realm="{auth.REALM}"'
            assert (await refused.json(content_type=None))["status"] == 401
        assert (await client.get(f"{server}/ops/static/ops.js")).status == 200
        login = await client.get(f"{server}/ops/login?next=//evil.example/")
        assert login.status == 200
        assert 'name="next" value="/ops/"' in await login.text()


async def test_the_login_form_sets_a_cookie_that_opens_the_pages(server: str) -> None:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as client:  # an IP host
        wrong = await client.post(
            f"{server}/ops/login", data={"token": "nope", "next": "/ops/flows"}
        )
        assert wrong.status == 401 and "not the admin token" in await wrong.text()
        assert auth.COOKIE not in client.cookie_jar.filter_cookies(URL(server))
        right = await client.post(
            f"{server}/ops/login",
            data={"token": DEV_ADMIN_TOKEN, "next": "/ops/flows"},
            allow_redirects=False,
        )
        assert (right.status, right.headers["Location"]) == (303, "/ops/flows")
        cookie = right.cookies[auth.COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        page = await client.get(f"{server}/ops/flows", headers={"Accept": "text/html"})
        assert page.status == 200 and 'data-page="flows"' in await page.text()
        # With the cookie, a change must be JSON: a cross-site form cannot send that.
        form = await client.post(f"{server}/ops/api/deadletters/replay", data={"partition": "0"})
        assert form.status == 415
        bad = await client.post(f"{server}/ops/api/deadletters/replay", json={"partition": -1})
        assert bad.status == 422
        assert (await bad.json(content_type=None))["errors"][0]["field"] == "partition"
        assert (await client.post(f"{server}/ops/logout", json={})).status == 200
        after = await client.get(f"{server}/ops/api/worker")
        assert after.status == 401


async def test_the_bearer_token_opens_everything_and_device_ids_are_checked(server: str) -> None:
    headers = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    async with ClientSession(headers=headers) as client:
        page = await client.get(f"{server}/ops/devices/not%20a%20device")
        assert page.status == 422
        assert (await page.json(content_type=None))["errors"][0]["field"] == "device_id"
        metrics = await client.get(f"{server}/metrics")
        assert metrics.status == 200
        text = await metrics.text()
        assert "fleet_agent_events_total" in text
        # the stub's lag, not a broker's
        assert 'fleet_consumer_lag{group="unit",partition="0",topic="fleet.raw.v1"} 2.0' in text
        assert "fleet_consumer_lag_up 1.0" in text
        assert "fleet_worker_ready 0.0" in text  # no assignment in this test: not ready
        assert "_created" not in text


@pytest.mark.parametrize("metrics_access", ["open"], indirect=True)
async def test_open_metrics_need_no_token_and_the_rest_still_does(server: str) -> None:
    async with ClientSession() as client:
        metrics = await client.get(f"{server}/metrics")
        assert metrics.status == 200
        assert "fleet_consumer_lag_up 1.0" in await metrics.text()
        assert (await client.get(f"{server}/ops/api/overview")).status == 401
        assert (await client.get(f"{server}/metricsx")).status == 401


async def test_the_new_endpoints_check_their_input_before_doing_anything(server: str) -> None:
    headers = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    async with ClientSession(headers=headers) as client:

        async def field_of(answer: Any) -> str:
            assert answer.status == 422
            return str((await answer.json(content_type=None))["errors"][0]["field"])

        assert await field_of(await client.get(f"{server}/ops/api/deadletters?since=noon")) == (
            "since"
        )
        no_zone = await client.get(f"{server}/ops/api/deadletters?until=2026-11-28T12:00:00")
        assert await field_of(no_zone) == "until"
        history = f"{server}/ops/api/alerts/history"
        assert await field_of(await client.get(f"{history}?state=open")) == "state"
        assert await field_of(await client.get(f"{history}?limit=0")) == "limit"
        assert await field_of(await client.get(f"{history}?device_id=a%20b")) == "device_id"
        toggle = await client.post(f"{server}/ops/api/devices/esp-1/enabled", json={"enabled": 1})
        assert await field_of(toggle) == "enabled"
        bulk = await client.post(f"{server}/ops/api/deadletters/replay/bulk", json={})
        assert await field_of(bulk) == "expected"


async def test_a_bulk_replay_needs_the_count_its_preview_saw(server: str) -> None:
    headers = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    async with ClientSession(headers=headers) as client:
        preview = await client.post(
            f"{server}/ops/api/deadletters/replay/preview", json={"stage": "validate"}
        )
        assert preview.status == 200
        assert (await preview.json())["count"] == 0
        stale = await client.post(
            f"{server}/ops/api/deadletters/replay/bulk", json={"stage": "validate", "expected": 2}
        )
        assert stale.status == 409
        assert (await stale.json(content_type=None))["count"] == 0
        trends = await client.get(f"{server}/ops/api/trends?local=1")
        assert (await trends.json()) == {"points": []}


async def test_an_action_without_the_admin_api_is_503(server: str) -> None:
    headers = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    async with ClientSession(headers=headers) as client:
        answer = await client.post(f"{server}/ops/api/flows/f-1/enabled", json={"enabled": False})
        assert answer.status == 503
        assert (await answer.json(content_type=None))["title"] == "Admin API unreachable"

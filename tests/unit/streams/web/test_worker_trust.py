"""A worker's requests to the other workers of its group, without Kafka: two stand-in workers
that record what they are sent, one on a URL ``FLEET_WORKER__TRUSTED_URLS`` lets through
(127.0.0.1) and one it does not (127.0.0.2, loopback too, but not listed), both advertised as
members of the group. The admin token goes to the first only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from yarl import URL

from agents.registry import build_worker_app
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from streams.web import devices
from streams.web.cluster import Operator
from tests.support import free_port, isolated


@dataclass
class StandInWorker:
    """Answers every path like a worker would, recording the credentials it was sent."""

    url: str = ""
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        if request.path == "/flows/":
            return web.json_response({"flows": []})
        return web.json_response({"url": self.url, "ready": True, "status": "ok"})


async def stand_in(host: str) -> AsyncIterator[StandInWorker]:
    worker = StandInWorker()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", worker.handle)
    server = TestServer(app, host=host)
    await server.start_server()
    worker.url = str(server.make_url("")).rstrip("/")
    try:
        yield worker
    finally:
        await server.close()


@pytest.fixture
async def trusted() -> AsyncIterator[StandInWorker]:
    async for worker in stand_in("127.0.0.1"):
        yield worker


@pytest.fixture
async def untrusted() -> AsyncIterator[StandInWorker]:
    async for worker in stand_in("127.0.0.2"):
        yield worker


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Its own URL: a free port, nothing answers there (flows asks every member, itself too).
    return isolated(Settings(), "unit", tmp_path, web_enabled=True, web_port=free_port())


def advertise(app: Any, monkeypatch: pytest.MonkeyPatch, *urls: str) -> None:
    """The group's metadata lists ``urls`` as members owning table partitions."""
    monkeypatch.setattr(app.router, "tables_metadata", lambda: {URL(url): {} for url in urls})
    monkeypatch.setattr(app.router, "external_topics_metadata", lambda: {})


def own_key(app: Any, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Every key of every table is owned by the worker at ``url``."""
    monkeypatch.setattr(app.router, "key_store", lambda *args: URL(url))


async def test_the_operator_views_ask_only_trusted_workers_and_show_the_others(
    settings: Settings,
    trusted: StandInWorker,
    untrusted: StandInWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, ctx = build_worker_app(settings)
    operator = Operator(ctx)
    monkeypatch.setattr(Operator, "worker", lambda self, query=None: {"url": self.url})
    advertise(app, monkeypatch, trusted.url, untrusted.url)
    try:
        answers = {answer["url"]: answer for answer in await operator.workers()}
        flows = await operator.flows()
        monkeypatch.setattr(devices, "table_ready", lambda app: True)
        monkeypatch.setattr(devices, "owns", lambda *args: False)
        own_key(app, monkeypatch, untrusted.url)
        status, state = await operator.device_state("dev-1", routed=False)
        own_key(app, monkeypatch, trusted.url)
        routed_status, _ = await operator.device_state("dev-1", routed=False)
    finally:
        await operator.close()

    assert untrusted.seen == []  # never called, so never sent the token
    bearer = f"Bearer {DEV_ADMIN_TOKEN}"
    assert trusted.seen == [
        ("/ops/api/worker", bearer),
        ("/flows/", bearer),
        ("/ops/api/devices/dev-1/state", bearer),
    ]
    assert answers[trusted.url]["ready"] and answers[trusted.url].get("trusted", True)
    shown = answers[untrusted.url]
    assert shown["trusted"] is False and not shown["ready"]
    assert (
        shown["error"].startswith("not trusted: ")
        and "FLEET_WORKER__TRUSTED_URLS" in (shown["error"])
    )
    assert trusted.url not in flows["errors"]
    assert flows["errors"][untrusted.url].startswith("not trusted: ")
    assert (status, state["status"], state["worker"]) == (503, "not trusted", untrusted.url)
    assert routed_status == 200


async def test_faust_table_routing_forwards_requests_only_to_trusted_workers(
    settings: Settings,
    trusted: StandInWorker,
    untrusted: StandInWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``/devices/{id}/status/`` (``@app.table_route``) forwards the request's own headers,
    the admin token or the session cookie, to the worker owning the key."""
    app, _ = build_worker_app(settings)
    server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    headers = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    try:
        async with ClientSession(headers=headers) as client:
            own_key(app, monkeypatch, untrusted.url)
            refused = await client.get(server.make_url("/devices/dev-1/status/"))
            assert refused.status == 503
            assert "not trusted" in await refused.text()
            own_key(app, monkeypatch, trusted.url)
            routed = await client.get(server.make_url("/devices/dev-1/status/"))
            assert routed.status == 200, await routed.text()
    finally:
        await server.close()
    assert untrusted.seen == []
    assert trusted.seen == [("/devices/dev-1/status/", f"Bearer {DEV_ADMIN_TOKEN}")]

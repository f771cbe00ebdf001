"""The operator views' rows for the MQTT fronts (each front's own /health answer, or why not)
and the seed profiles the overview names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from schemas.settings import CompatSettings
from streams.web.cluster import compat_summary
from streams.web.fronts import front_rows
from tests.support import free_port


async def _serve(handler: Callable[[web.Request], Awaitable[web.Response]]) -> TestServer:
    app = web.Application()
    app.router.add_get("/health", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, str]]:
    async def front(_: web.Request) -> web.Response:
        return web.json_response({"status": "loading", "pid": 42, "connections": 3}, status=503)

    async def other(_: web.Request) -> web.Response:
        return web.json_response(["not", "a", "front"])

    started = [await _serve(front), await _serve(other)]
    try:
        yield tuple(str(s.make_url("")).rstrip("/") for s in started)  # type: ignore[misc]
    finally:
        for server in started:
            await server.close()


async def test_each_url_gets_its_front_s_answer_or_the_reason_in_the_order_given(
    servers: tuple[str, str],
) -> None:
    front, other = servers
    nobody = f"http://127.0.0.1:{free_port()}"
    async with ClientSession() as session:
        rows = await front_rows(session, [nobody, front, other])
    assert [row["url"] for row in rows] == [nobody, front, other]
    assert rows[0]["status"] == "unreachable" and "ClientConnectorError" in rows[0]["error"]
    # a 503 "loading" is still the front's own answer, shown as it is
    assert rows[1] == {"url": front, "status": "loading", "pid": 42, "connections": 3}
    not_a_front = {"url": other, "status": "unreachable", "error": "not a front's health answer"}
    assert rows[2] == not_a_front


def test_the_overview_names_the_seed_profiles_on_and_their_trusted_networks() -> None:
    assert compat_summary(CompatSettings()) == {"seeds": [], "trusted_networks": []}
    on = CompatSettings(seeds="3,001", trusted_networks="10.20.0.0/16")
    assert compat_summary(on) == {"seeds": ["001", "003"], "trusted_networks": ["10.20.0.0/16"]}

"""HSTS: every answer carries Strict-Transport-Security while the API serves HTTPS."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from api.hsts import StrictTransportSecurity


def _app(*, hsts: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    if hsts:
        app.add_middleware(StrictTransportSecurity, max_age_s=600)
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://fleet.test")


async def test_the_header_is_on_answers_and_errors() -> None:
    async with _client(_app(hsts=True)) as client:
        ok = await client.get("/ping")
        missing = await client.get("/nowhere")
    assert ok.headers["strict-transport-security"] == "max-age=600"
    assert missing.status_code == 404
    assert missing.headers["strict-transport-security"] == "max-age=600"


async def test_no_header_without_the_middleware() -> None:
    async with _client(_app(hsts=False)) as client:
        assert "strict-transport-security" not in (await client.get("/ping")).headers

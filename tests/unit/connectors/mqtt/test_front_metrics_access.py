"""The MQTT front's /metrics follows FLEET_METRICS__ACCESS like the API's and the workers'."""

from __future__ import annotations

from typing import Any, cast

from aiohttp.test_utils import TestClient, TestServer

from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.front.server import Front
from schemas.settings import DEV_ADMIN_TOKEN, MetricsSettings, Settings


async def scrape(access: str, headers: dict[str, str]) -> tuple[int, str]:
    settings = Settings().model_copy(update={"metrics": MetricsSettings(access=access)})
    metrics = FrontMetrics()
    metrics.refused("connect:0x86")
    front = Front(settings, cast(Any, None), metrics)  # /metrics never asks the ingest
    async with TestClient(TestServer(front.health(), host="127.0.0.1")) as client:
        answer = await client.get("/metrics", headers=headers)
        return answer.status, await answer.text()


async def test_open_metrics_answer_anyone_without_created_series() -> None:
    status, text = await scrape("open", {})
    assert status == 200
    assert 'fleet_mqtt_refusals_total{reason="connect:0x86"} 1.0' in text
    assert "_created" not in text


async def test_token_metrics_want_the_admin_token() -> None:
    assert (await scrape("token", {}))[0] == 401
    assert (await scrape("token", {"Authorization": "Bearer nope"}))[0] == 401
    status, text = await scrape("token", {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"})
    assert status == 200 and "fleet_mqtt_refusals_total" in text

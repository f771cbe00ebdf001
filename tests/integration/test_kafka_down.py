"""With the broker stopped, the edge answers 503 with Retry-After, never 202."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from cli.stack import manager
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet


@pytest.mark.disruptive
async def test_api_answers_503_while_kafka_is_stopped(
    pipeline: Settings, stack_settings: Settings
) -> None:
    settings = pipeline.model_copy(
        update={"kafka": pipeline.kafka.model_copy(update={"delivery_timeout_ms": 2000})}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            # The device is registered (and known to the cache) while Kafka runs, so the
            # request below passes authentication and meets the stopped broker.
            fleet = Fleet(client)
            device = device_ids(1)[0]
            await fleet.enroll([device])
            manager.down(stack_settings, services=["kafka"], progress=print)
            try:
                response = await fleet.post([reading(device, 0)])
                ready = await client.get("/health/ready")
            finally:
                manager.up(stack_settings, services=["kafka"], progress=print)
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(settings.api.retry_after_s)
    assert response.headers["content-type"] == "application/problem+json"
    assert "event log" in response.json()["detail"]  # the producer's 503, not the cache's
    assert ready.status_code == 503

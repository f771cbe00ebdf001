"""The flow admin API on an in-memory registry: problem documents naming the field, and what a
failed publish answers (the same outcomes as the device routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from connectors.registry import FlowRegistry
from schemas.flows import decode_flow_document
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from streams.flow_engine.engine import check_definition
from streams.flow_engine.examples import GAS_ABOVE_500
from tests.unit.registry_fakes import MemoryFlowStore, MemoryPublisher

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
FLOWS = "/api/v1/admin/flows"


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher(topic="fleet.flows.v1")


@pytest.fixture
async def client(publisher: MemoryPublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings())
    app.state.flow_registry = FlowRegistry(MemoryFlowStore(), publisher, check_definition)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        yield http


async def _create(client: httpx.AsyncClient, flow_id: str = "gas") -> httpx.Response:
    body = {"flow_id": flow_id, "definition": GAS_ABOVE_500}
    return await client.post(FLOWS, json=body, headers=ADMIN)


async def test_a_second_create_is_409_on_flow_id_and_republishes(
    client: httpx.AsyncClient, publisher: MemoryPublisher
) -> None:
    created = await _create(client)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["alert_rule"]
    again = await _create(client)
    assert again.status_code == 409
    assert again.json()["errors"][0] == {
        "field": "flow_id",
        "message": "flow gas already exists",
        "type": "conflict",
    }
    assert [key for key, _ in publisher.sent] == ["gas", "gas"]


async def test_an_unknown_flow_is_404_on_flow_id(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get(f"{FLOWS}/nope", headers=ADMIN),
        await client.patch(f"{FLOWS}/nope", json={"enabled": False}, headers=ADMIN),
        await client.delete(f"{FLOWS}/nope", headers=ADMIN),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "flow nope does not exist"
        assert response.json()["errors"][0]["field"] == "flow_id"
    older = await client.get(f"{FLOWS}/nope?version=3", headers=ADMIN)
    assert older.json()["detail"] == "version 3 of flow nope does not exist"


async def test_a_failed_publish_is_503_with_retry_after_and_a_retry_publishes(
    client: httpx.AsyncClient, publisher: MemoryPublisher
) -> None:
    assert (await _create(client)).status_code == 201
    publisher.down = True
    failed = await client.patch(f"{FLOWS}/gas", json={"enabled": False}, headers=ADMIN)
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == str(Settings().api.retry_after_s)
    assert "fleetstream flows resync" in failed.json()["detail"]
    publisher.down = False
    retried = await client.patch(f"{FLOWS}/gas", json={"enabled": False}, headers=ADMIN)
    assert retried.status_code == 200
    published = publisher.latest()["gas"]
    assert published is not None and not decode_flow_document(published).enabled


async def test_a_definition_that_does_not_compile_is_422_naming_the_node(
    client: httpx.AsyncClient, publisher: MemoryPublisher
) -> None:
    node = {**GAS_ABOVE_500["nodes"][0], "condition": "sensors.mq134.gas_concentration >"}
    body = {"flow_id": "gas", "definition": {**GAS_ABOVE_500, "nodes": [node]}}
    response = await client.post(FLOWS, json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["errors"][0]["node"] == "high_gas"
    assert publisher.sent == []


async def test_a_definition_that_could_cost_too_much_is_422_naming_the_node_and_field(
    client: httpx.AsyncClient, publisher: MemoryPublisher
) -> None:
    deep = "xs.map(a, xs.map(b, xs.map(c, xs.map(d, a + b + c + d)))).size() > 0"
    node = {"id": "grid", "type": "filter", "expr": deep}
    body = {"flow_id": "grid", "definition": {"name": "grid", "nodes": [node]}}
    response = await client.post(FLOWS, json=body, headers=ADMIN)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], error["node"], error["type"]) == (
        "definition.nodes.0.expr",
        "grid",
        "cost",
    )
    assert "nest 4 deep" in error["message"]
    assert publisher.sent == []

"""Flow dry runs through the API with real evaluator processes: the answer; a flow too slow for
the time limit is stopped there while the API keeps answering and refuses dry runs beyond the
limit at once; an evaluator that dies is a 500 and replaced. The tests share one app: an
evaluator takes ~1 s to start."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.dry_runs import DryRunner
from connectors.registry import FlowRegistry
from schemas.flows import FlowDocument, decode_definition
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from streams.flow_engine.engine import check_definition
from streams.flow_engine.examples import GAS_ABOVE_500
from tests.clock import CLOCK
from tests.support import wait_until
from tests.unit.registry_fakes import MemoryFlowStore, MemoryPublisher

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
FLOWS = "/api/v1/admin/flows"
TIMEOUT_S = 0.5
READING = {"device_id": "esp32-1", "sensors": {"mq134": {"gas_concentration": 612.0}}}
SLOW: dict[str, Any] = {
    "name": "slow",
    "nodes": [
        {"id": "grid", "type": "transform", "set": {"l": "[" + ",".join(["0"] * 400) + "]"}},
        {"id": "pairs", "type": "filter", "expr": "fields.l.map(a, fields.l.map(b, a)).size() > 0"},
    ],
}
"""Within the static cost limit (the list comes from an earlier node), yet ~5 s of CEL, which
holds the GIL all along."""
ENDS_AT_ONCE = """
import sys
sys.stdout.buffer.write(bytes([0, 0, 0, 5]) + b"ready")
sys.stdout.buffer.flush()
sys.stdin.buffer.read(4)
"""
"""An evaluator that says it is ready, then ends on the first request without answering."""


@pytest.fixture(scope="module")
async def store() -> MemoryFlowStore:
    return MemoryFlowStore()


@pytest.fixture(scope="module")
async def app_client(store: MemoryFlowStore) -> AsyncIterator[tuple[DryRunner, httpx.AsyncClient]]:
    base = Settings()
    limits = {"dry_run_timeout_s": TIMEOUT_S, "dry_runs_at_once": 1}
    app = create_app(base.model_copy(update={"api": base.api.model_copy(update=limits)}))
    publisher = MemoryPublisher(topic="fleet.flows.v1")
    app.state.flow_registry = FlowRegistry(store, publisher, check_definition)
    runner: DryRunner = app.state.dry_runner
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            for flow_id, definition in (("gas", GAS_ABOVE_500), ("slow", SLOW)):
                body = {"flow_id": flow_id, "definition": definition}
                created = await client.post(FLOWS, json=body, headers=ADMIN)
                assert created.status_code == 201, created.text
            yield runner, client
    finally:
        await runner.close()


def dry_run(client: httpx.AsyncClient, flow_id: str) -> asyncio.Task[httpx.Response]:
    body = {"reading": READING}
    return asyncio.create_task(client.post(f"{FLOWS}/{flow_id}/dry-run", json=body, headers=ADMIN))


async def evaluating(runner: DryRunner) -> None:
    async def started() -> bool:
        return runner.evaluating == 1

    await wait_until(started, timeout_s=30, poll_s=0.01, what="the dry run to be evaluating")


async def test_a_dry_run_answers_with_the_trace_and_the_alert(
    app_client: tuple[DryRunner, httpx.AsyncClient],
) -> None:
    _, client = app_client
    response = await dry_run(client, "gas")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["matches"], answer["completed"]) == (True, True)
    assert answer["trace"] == [
        {
            "node": "high_gas",
            "type": "alert",
            "outcome": "evaluated",
            "condition": True,
            "clear": False,
            "value": 612.0,
            "in_schedule": True,
        }
    ]
    assert answer["alert"]["fires_from_idle"] is True  # seed 002's rule: at once
    assert (
        answer["alert"]["message"] == "gas concentration 612.0 ppm on esp32-1 (threshold 500 ppm)"
    )


async def test_a_slow_dry_run_is_stopped_at_the_time_limit_while_the_api_answers(
    app_client: tuple[DryRunner, httpx.AsyncClient],
) -> None:
    runner, client = app_client
    slow = dry_run(client, "slow")
    await evaluating(runner)
    started = time.monotonic()
    refused = await dry_run(client, "gas")  # one at once; refused at once
    assert time.monotonic() - started < TIMEOUT_S / 2, "the evaluation held the API"
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == str(Settings().api.retry_after_s)
    assert "1 dry runs are evaluating (at most 1 at once)" in refused.json()["detail"]
    answered = 0
    while not slow.done():  # the API answers all along the evaluation
        asked = time.monotonic()
        health = await client.get("/health")
        assert health.status_code == 200
        assert time.monotonic() - asked < TIMEOUT_S / 2, "the evaluation held /health"
        answered += 1
        await asyncio.sleep(0)  # the dry run's turn: an in-process request never yields
    assert answered > 1
    response = await slow
    assert time.monotonic() - started < TIMEOUT_S + 1.0  # not after the ~5 s evaluation
    assert response.status_code == 422
    problem = response.json()
    assert problem["title"] == "Dry run took too long"
    assert problem["detail"] == (
        f"the flow took longer than {TIMEOUT_S:g} s on this reading; it was stopped"
    )
    assert problem["errors"][0]["type"] == "timeout"
    again = await dry_run(client, "gas")  # a new evaluator, not the one still busy
    assert again.status_code == 200, again.text


async def test_a_stored_version_that_no_longer_compiles_is_422_naming_the_node(
    app_client: tuple[DryRunner, httpx.AsyncClient], store: MemoryFlowStore
) -> None:
    _, client = app_client
    deep = "xs.map(a, xs.map(b, xs.map(c, a))).size() > 0"  # stored before the cost limit
    definition = decode_definition(
        {"name": "old", "nodes": [{"id": "deep", "type": "filter", "expr": deep}]}
    )
    now = CLOCK.now()
    store.rows["old"] = FlowDocument(
        flow_id="old",
        version=1,
        enabled=True,
        definition=definition,
        created_at=now,
        updated_at=now,
    )
    response = await dry_run(client, "old")
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], error["node"], error["type"]) == (
        "definition.nodes.0.expr",
        "deep",
        "cost",
    )


async def test_an_evaluator_that_ends_without_answering_is_500_and_replaced() -> None:
    runner = DryRunner(timeout_s=5, at_once=1, command=(sys.executable, "-c", ENDS_AT_ONCE))
    app = create_app(Settings())
    app.state.dry_runner = runner
    store = MemoryFlowStore()
    app.state.flow_registry = FlowRegistry(store, MemoryPublisher(topic="t"), check_definition)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            created = await client.post(
                FLOWS, json={"flow_id": "gas", "definition": GAS_ABOVE_500}, headers=ADMIN
            )
            assert created.status_code == 201
            for _ in range(2):  # each time a new evaluator, which ends too
                response = await dry_run(client, "gas")
                assert response.status_code == 500
                assert response.json()["title"] == "Dry run failed"
                assert "the dry-run evaluator ended (exit code 0)" in response.json()["detail"]
    finally:
        await runner.close()

"""Flows and alerts through the real stack: API → fleet.flows.v1 → worker → outputs.

Each test has its own topics, consumer group and worker (``pipeline``); flows, alerts and rows
in the shared test database are told apart by uuid flow ids and device ids.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.kafka.admin import TopicSpec, delete_topics, ensure_topics
from schemas.contract_wire import decode_alert, decode_dead_letter
from schemas.flows import AlertEvent
from schemas.settings import Settings
from streams.flow_engine.examples import GAS_ABOVE_500, PRESENCE_AFTER_HOURS
from tests.clock import base_time
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import committed, partition_ends, read_to_end
from tests.integration.mqtt_tools import start_broker, with_broker
from tests.integration.processes import WorkerProcess
from tests.support import free_port, wait_until

GAS_FOR_30_S: dict[str, Any] = {
    **GAS_ABOVE_500,
    "nodes": [{**GAS_ABOVE_500["nodes"][0], "for_s": 30}],
}
"""The gas rule held for 30 s of reading time: the example fires at once, these tests need a
wait to observe (and a worker that lost its state would start the wait again)."""

FLOWS = "/api/v1/admin/flows"
START_S = 90.0
"""A fresh worker joins its group, recovers tables and reads the registries first."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_flow(
    client: httpx.AsyncClient, flow_id: str, definition: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(
        FLOWS, json={"flow_id": flow_id, "definition": definition}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def gas(device_id: str, ppm: float, second: int) -> dict[str, Any]:
    body = reading(device_id, 0, {"mq134": {"gas_concentration": ppm}})
    body["timestamp"] = (base_time() + timedelta(seconds=second)).isoformat()
    return body


def alert_events(settings: Settings, device_id: str) -> list[AlertEvent]:
    values = read_to_end(settings.kafka.bootstrap_servers, settings.topics.alerts)
    events = [decode_alert(value) for value in values]
    return [event for event in events if event.device_id == device_id]


@pytest.fixture
def out_topic(pipeline: Settings) -> Iterator[str]:
    """A topic outside the pipeline for Kafka nodes to write to."""
    name = unique("test.flow-out")
    bootstrap = pipeline.kafka.bootstrap_servers
    ensure_topics(bootstrap, [TopicSpec(name, 1, 1, {})])
    yield name
    delete_topics(bootstrap, [name])


async def test_a_flow_applies_within_seconds_and_a_new_version_replaces_it(
    pipeline: Settings, worker: WorkerProcess, fleet: Fleet, out_topic: str
) -> None:
    (device,) = device_ids(1)
    await fleet.enroll([device])
    flow_id = unique("reload")

    def definition(version: int) -> dict[str, Any]:
        body = f"{{'version': {version}, 'gas': sensors.mq134.gas_concentration}}"
        return {
            "name": "hot reload",
            "match": {"devices": [device]},
            "nodes": [
                {"id": "gas", "type": "filter", "expr": "has(sensors.mq134)"},
                {"id": "out", "type": "kafka", "topic": out_topic, "body": body},
            ],
        }

    created = await create_flow(fleet.client, flow_id, definition(1))
    assert created["version"] == 1
    sent = 0

    async def output_of(version: int) -> bool:
        nonlocal sent
        sent += 1
        response = await fleet.post(reading(device, sent))
        assert response.status_code == 202, response.text
        values = read_to_end(pipeline.kafka.bootstrap_servers, out_topic)
        return any(json.loads(value)["version"] == version for value in values)

    await wait_until(
        lambda: output_of(1), timeout_s=START_S, what=lambda: f"v1 output\n{worker.log_tail()}"
    )
    response = await fleet.client.put(
        f"{FLOWS}/{flow_id}", json={"definition": definition(2)}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    await wait_until(
        lambda: output_of(2), timeout_s=30, what=lambda: f"the v2 output\n{worker.log_tail(60)}"
    )
    assert worker.running
    versions = [
        json.loads(value)["version"]
        for value in read_to_end(pipeline.kafka.bootstrap_servers, out_topic)
    ]
    first_v2 = versions.index(2)
    assert set(versions[first_v2:]) == {2}  # one device, one partition: v2 replaced v1
    old = await fleet.client.get(f"{FLOWS}/{flow_id}?version=1", headers=ADMIN)
    assert old.json()["version"] == 1
    assert old.json()["definition"]["nodes"][1]["body"] == definition(1)["nodes"][1]["body"]


class _Receiver(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver:
    """A local HTTP server on 127.0.0.1 that records what flows send it."""

    def __init__(self, port: int) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

        class Handler(_Receiver):
            requests = self.requests

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


async def test_http_node_reaches_a_server_and_a_server_that_is_down_is_dead_lettered(
    pipeline: Settings, worker: WorkerProcess, fleet: Fleet, db: asyncpg.Connection
) -> None:
    (device,) = device_ids(1)
    await fleet.enroll([device])
    port = free_port()
    receiver = Receiver(port)
    flow_id = unique("hook")
    node = {
        "id": "hook",
        "type": "http",
        "url": f"http://127.0.0.1:{port}/hooks/${{device.id}}",
        "headers": {"X-Flow": "${flow.id}"},
        "timeout_s": 1,
        "retries": 1,
        "backoff_s": 0.1,
    }
    await create_flow(fleet.client, flow_id, {"name": "hook", "nodes": [node]})
    try:
        sent = 0

        async def delivered() -> bool:
            nonlocal sent
            sent += 1
            assert (await fleet.post(reading(device, sent))).status_code == 202
            return bool(receiver.requests)

        await wait_until(
            delivered, timeout_s=START_S, what=lambda: f"a hook call\n{worker.log_tail()}"
        )
    finally:
        receiver.stop()
    path, headers, body = receiver.requests[0]
    assert path == f"/hooks/{device}"
    assert headers["x-flow"] == flow_id
    assert headers["idempotency-key"]
    call = json.loads(body)
    assert (call["flow_id"], call["device_id"]) == (flow_id, device)

    later = [reading(device, 1000 + n) for n in range(5)]
    response = await fleet.post(later)
    assert response.status_code == 202
    event_ids = set(response.json()["event_ids"])

    async def stored_and_dead_lettered() -> bool:
        rows = await db.fetchval(
            "SELECT count(*) FROM readings WHERE event_id::text = ANY($1)", list(event_ids)
        )
        letters = [
            decode_dead_letter(value)
            for value in read_to_end(pipeline.kafka.bootstrap_servers, pipeline.topics.deadletter)
        ]
        failed = {letter.event_id for letter in letters if letter.stage == f"flow.{flow_id}"}
        return rows == len(event_ids) and event_ids <= failed

    await wait_until(
        stored_and_dead_lettered,
        timeout_s=60,
        what=lambda: f"rows and dead letters of the failed calls\n{worker.log_tail()}",
    )
    letters = [
        decode_dead_letter(value)
        for value in read_to_end(pipeline.kafka.bootstrap_servers, pipeline.topics.deadletter)
    ]
    letter = next(item for item in letters if item.event_id in event_ids)
    assert "ConnectError" in letter.reason or "refused" in letter.reason.lower()
    original = json.loads(letter.original)
    assert original["target"] == f"http://127.0.0.1:{port}/hooks/{device}"
    assert original["attempts"] == 2


@pytest.fixture(scope="module")
def broker(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A Mosquitto of this module's own, with dynamic security, as ``stack up`` makes it."""
    yield from start_broker(stack_settings, tmp_path_factory.mktemp("flows-mqtt"))


class Subscriber:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        mqtt_settings = settings.mqtt
        self.client.username_pw_set(
            mqtt_settings.admin_username, mqtt_settings.admin_password.get_secret_value()
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect(mqtt_settings.host, mqtt_settings.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_mqtt_node_publishes_to_mosquitto_as_the_flows_user(
    pipeline: Settings, broker: Settings, fleet: Fleet, tmp_path: Path
) -> None:
    settings = with_broker(pipeline, broker)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    prefix = unique("flowtest")
    subscriber = Subscriber(settings, f"{prefix}/#")
    try:
        assert subscriber.subscribed.wait(10), "the test's subscription was not acknowledged"
        (device,) = device_ids(1)
        await fleet.enroll([device])
        node = {"id": "pub", "type": "mqtt", "topic": f"{prefix}/${{device.id}}/gas"}
        await create_flow(fleet.client, unique("mqtt"), {"name": "mqtt", "nodes": [node]})
        sent = 0

        async def published() -> bool:
            nonlocal sent
            sent += 1
            assert (await fleet.post(reading(device, sent))).status_code == 202
            return bool(subscriber.messages)

        await wait_until(
            published, timeout_s=START_S, what=lambda: f"an MQTT message\n{worker.log_tail()}"
        )
    finally:
        subscriber.close()
        worker.stop()
    topic, payload = subscriber.messages[0]
    assert topic == f"{prefix}/{device}/gas"
    assert json.loads(payload)["device_id"] == device


async def wait_alert_rows(
    db: asyncpg.Connection, device: str, cleared: bool, worker: WorkerProcess
) -> list[asyncpg.Record]:
    async def arrived() -> bool:
        rows = await db.fetch("SELECT * FROM alerts WHERE device_id = $1", device)
        return bool(rows) and all((row["cleared_at"] is not None) == cleared for row in rows)

    await wait_until(arrived, timeout_s=START_S, what=lambda: f"alert rows\n{worker.log_tail()}")
    return list(await db.fetch("SELECT * FROM alerts WHERE device_id = $1", device))


async def test_gas_rule_fires_once_for_a_sustained_high_reading_and_clears_once(
    pipeline: Settings, worker: WorkerProcess, fleet: Fleet, db: asyncpg.Connection
) -> None:
    (device,) = device_ids(1)
    await fleet.enroll([device])
    rule_id = unique("gas-above-500")
    await create_flow(fleet.client, rule_id, GAS_FOR_30_S)
    await wait_rule_loaded(worker, rule_id)
    highs = [gas(device, 600 + n, 10 * n) for n in range(6)]  # 0 s .. 50 s above 500
    lows = [gas(device, 480, 60), gas(device, 400, 70), gas(device, 300, 80)]
    assert (await fleet.post(highs)).status_code == 202
    assert (await fleet.post(lows)).status_code == 202
    (row,) = await wait_alert_rows(db, device, cleared=True, worker=worker)
    assert row["rule_id"] == rule_id and row["severity"] == "critical"
    assert row["fired_at"] == base_time() + timedelta(seconds=30)
    assert row["cleared_at"] == base_time() + timedelta(seconds=70)  # 480 is not below 450
    assert row["value"] == 603
    events = alert_events(pipeline, device)
    assert [event.state for event in events] == ["fired", "cleared"]
    assert {event.alert_id for event in events} == {str(row["alert_id"])}

    listed = await fleet.client.get(
        "/api/v1/alerts", params={"device_id": device, "state": "cleared"}, headers=ADMIN
    )
    assert listed.status_code == 200 and listed.json()["total"] == 1
    alert_id = listed.json()["items"][0]["alert_id"]
    acked = await fleet.client.post(f"/api/v1/alerts/{alert_id}/ack?by=ops", headers=ADMIN)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "ops"


async def wait_rule_loaded(worker: WorkerProcess, flow_id: str) -> None:
    """Until the worker has compiled the flow (it logs the flows in force when they change)."""

    async def loaded() -> bool:
        return any(
            "flows in force:" in line and flow_id in line
            for line in worker.log_tail(2000).splitlines()
        )

    await wait_until(
        loaded, timeout_s=START_S, what=lambda: f"{flow_id} loaded\n{worker.log_tail()}"
    )


async def test_presence_rule_respects_the_schedule_in_the_devices_time_zone(
    pipeline: Settings, worker: WorkerProcess, fleet: Fleet, db: asyncpg.Connection
) -> None:
    utc_device, kiritimati = device_ids(2)
    await fleet.enroll([utc_device], tags=["secure-area"], metadata={"timezone": "UTC"})
    await fleet.enroll(
        [kiritimati], tags=["secure-area"], metadata={"timezone": "Pacific/Kiritimati"}
    )
    rule_id = unique("presence")
    await create_flow(fleet.client, rule_id, PRESENCE_AFTER_HOURS)

    def radar(device: str, presence: bool, at: timedelta) -> dict[str, Any]:
        body = reading(device, 0, {"ld2410": {"presence": presence, "distance_cm": 100}})
        body["timestamp"] = (base_time() + at).isoformat()
        return body

    await wait_rule_loaded(worker, rule_id)
    # Noon UTC is business hours in UTC and 02:00 on Kiritimati (UTC+14).
    noon = [radar(utc_device, True, timedelta(0)), radar(utc_device, False, timedelta(minutes=1))]
    assert (await fleet.post(noon)).status_code == 202
    assert (await fleet.post(radar(kiritimati, True, timedelta(0)))).status_code == 202
    late = radar(utc_device, True, timedelta(hours=11))  # 23:00 UTC
    assert (await fleet.post(late)).status_code == 202
    (night,) = await wait_alert_rows(db, utc_device, cleared=False, worker=worker)
    (remote,) = await wait_alert_rows(db, kiritimati, cleared=False, worker=worker)
    assert night["fired_at"] == base_time() + timedelta(hours=11)
    assert remote["fired_at"] == base_time()
    assert [event.state for event in alert_events(pipeline, utc_device)] == ["fired"]


async def test_alert_state_survives_a_worker_sigkill_without_a_repeated_alert(
    pipeline: Settings,
    worker_factory: list[WorkerProcess],
    fleet: Fleet,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    (device,) = device_ids(1)
    await fleet.enroll([device])
    rule_id = unique("gas-above-500")
    await create_flow(fleet.client, rule_id, GAS_FOR_30_S)
    first = WorkerProcess(pipeline, tmp_path / "worker-1.log")
    worker_factory.append(first)
    first.start()
    await wait_rule_loaded(first, rule_id)
    assert (await fleet.post([gas(device, 700, 10 * n) for n in range(4)])).status_code == 202
    await wait_alert_rows(db, device, cleared=False, worker=first)
    bootstrap, curated = pipeline.kafka.bootstrap_servers, pipeline.topics.curated

    async def all_committed() -> bool:
        ends = partition_ends(bootstrap, curated)
        return committed(bootstrap, pipeline.worker.app_id, curated) == ends

    await wait_until(all_committed, timeout_s=30, what="the firing batch's offsets committed")
    first.kill()
    second = WorkerProcess(pipeline, tmp_path / "worker-2.log")
    worker_factory.append(second)
    second.start()
    # A worker that lost the rule's state would start counting again at 50 s and fire at 80 s.
    still_high = [gas(device, 700, 10 * n) for n in range(5, 11)]
    assert (await fleet.post(still_high)).status_code == 202
    assert (await fleet.post(gas(device, 100, 120))).status_code == 202
    (row,) = await wait_alert_rows(db, device, cleared=True, worker=second)
    events = alert_events(pipeline, device)
    assert [event.state for event in events] == ["fired", "cleared"]
    assert {event.alert_id for event in events} == {str(row["alert_id"])}
    assert row["cleared_at"] == base_time() + timedelta(seconds=120)


async def test_flow_definitions_are_refused_with_the_node_and_field(
    api_client: httpx.AsyncClient,
) -> None:
    bad: dict[str, Any] = {
        "name": "bad",
        "nodes": [
            {"id": "calc", "type": "transform", "set": {"f": "sensors.x *"}},
            {"id": "hook", "type": "http", "url": "http://x", "timeout_s": 999},
        ],
    }
    response = await api_client.post(
        FLOWS, json={"flow_id": unique("bad"), "definition": bad}, headers=ADMIN
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], error["node"]) == ("definition.nodes.1.timeout_s", "hook")
    bad["nodes"][1]["timeout_s"] = 5
    response = await api_client.post(
        FLOWS, json={"flow_id": unique("bad"), "definition": bad}, headers=ADMIN
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], error["node"]) == ("definition.nodes.0.set.f", "calc")


async def test_dry_run_returns_the_trace_without_side_effects(
    pipeline: Settings, api_client: httpx.AsyncClient, out_topic: str
) -> None:
    flow_id = unique("dry")
    definition = {
        "name": "dry",
        "nodes": [
            {"id": "calc", "type": "transform", "set": {"k": "sensors.mq134.gas_concentration"}},
            {"id": "out", "type": "kafka", "topic": out_topic},
            {"id": "alarm", "type": "alert", "condition": "fields.k > 500.0", "value": "fields.k"},
        ],
    }
    await create_flow(api_client, flow_id, definition)
    (device,) = device_ids(1)
    response = await api_client.post(
        f"{FLOWS}/{flow_id}/dry-run",
        json={"reading": gas(device, 650, 0)},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [(step["node"], step["outcome"]) for step in answer["trace"]] == [
        ("calc", "passed"),
        ("out", "planned"),
        ("alarm", "evaluated"),
    ]
    assert answer["alert"]["fires_from_idle"] is True and answer["alert"]["value"] == 650
    assert answer["outbound"][0]["target"] == out_topic
    assert read_to_end(pipeline.kafka.bootstrap_servers, out_topic, timeout_s=2) == []
    invalid = await api_client.post(
        f"{FLOWS}/{flow_id}/dry-run",
        json={"reading": {"device_id": device, "sensors": {"mq134": {"gas_concentration": -1}}}},
        headers=ADMIN,
    )
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"].startswith("reading.sensors.mq134")


SLOW: dict[str, Any] = {
    "name": "slow",
    "nodes": [
        {"id": "grid", "type": "transform", "set": {"l": "[" + ",".join(["0"] * 400) + "]"}},
        {"id": "pairs", "type": "filter", "expr": "fields.l.map(a, fields.l.map(b, a)).size() > 0"},
    ],
}
"""Within the static cost limit (the list comes from an earlier node), yet ~5 s of CEL."""


async def test_a_slow_dry_run_is_stopped_at_its_time_limit_while_the_api_answers(
    pipeline: Settings, api_client: httpx.AsyncClient
) -> None:
    fast, slow_id = unique("fast"), unique("slow")
    await create_flow(api_client, fast, GAS_ABOVE_500)
    await create_flow(api_client, slow_id, SLOW)
    (device,) = device_ids(1)
    body = {"reading": gas(device, 650, 0)}
    warm = await api_client.post(f"{FLOWS}/{fast}/dry-run", json=body, headers=ADMIN)
    assert warm.status_code == 200, warm.text  # the evaluator is up
    started = time.monotonic()
    slow = asyncio.create_task(
        api_client.post(f"{FLOWS}/{slow_id}/dry-run", json=body, headers=ADMIN)
    )
    answered = 0
    while not slow.done():  # the API answers all along the evaluation
        asked = time.monotonic()
        assert (await api_client.get("/health")).status_code == 200
        assert time.monotonic() - asked < 0.5, "the evaluation held /health"
        answered += 1
        await asyncio.sleep(0)  # the dry run's turn: an in-process request never yields
    response = await slow
    limit = pipeline.api.dry_run_timeout_s
    assert time.monotonic() - started < limit + 1.0  # not after the ~5 s evaluation
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        f"the flow took longer than {limit:g} s on this reading; it was stopped"
    )
    assert answered > 1

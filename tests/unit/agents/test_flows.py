"""The flows agent's batch step and its outbound calls, without Faust or a network."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest

from agents.flows import CompiledFlows
from agents.flows_runner import FlowRunner
from connectors.egress import kafka_target_refusal
from connectors.integrations.dispatch import Dispatcher, KafkaSender
from connectors.integrations.errors import CallFailed
from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.flow_cache import FlowCache
from connectors.kafka.producer import Record
from schemas.envelopes import curated_envelope
from schemas.events import decode_dead_letter
from schemas.flows import FlowDocument, Outbound, decode_alert_event, decode_definition
from schemas.settings import Settings
from streams.flow_engine import alerts
from streams.flow_engine.catalog import FlowSet
from streams.flow_engine.engine import compile_flow
from streams.flow_engine.examples import GAS_ABOVE_500

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class Message:
    value: bytes | None
    topic: str = "curated"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    timestamp: float = 0.0
    headers: Any = None


def item(device: str, ppm: float, second: int, **extra: Any) -> bytes:
    return msgspec.json.encode(
        {
            "event_id": f"{device}-{second}",
            "device_id": device,
            "ts": (T0 + timedelta(seconds=second)).isoformat(),
            "received_at": T0.isoformat(),
            "source": "http",
            "sensors": {"mq134": {"gas_concentration": ppm}},
            **extra,
        }
    )


def flowset(*bodies: tuple[str, dict[str, Any]]) -> FlowSet:
    return FlowSet.of(
        compile_flow(
            FlowDocument(
                flow_id=flow_id,
                version=1,
                enabled=True,
                definition=decode_definition(body),
                created_at=T0,
                updated_at=T0,
            )
        )
        for flow_id, body in bodies
    )


RUNNER = FlowRunner("alerts", "deadletters")


def nothing(_device_id: str) -> alerts.DeviceFlowState | None:
    return None


GAS = ("gas", GAS_ABOVE_500)


def test_alert_transitions_and_state_per_device_for_one_batch() -> None:
    items = [item("d1", 600, 10 * n) for n in range(4)] + [item("d2", 10, 0)]
    message = Message(curated_envelope(items, [(0, 5, n) for n in range(5)]))
    result = RUNNER.run_batch([message], flowset(GAS), nothing, T0)
    (record,) = result.outputs.records("alerts")
    event = decode_alert_event(record.value or b"")
    fired_at = T0  # seed 002's rule: the first reading above 500 ppm fires it
    assert (event.state, event.device_id, event.fired_at) == ("fired", "d1", fired_at)
    assert record.key == b"d1"
    assert set(result.states) == {"d1", "d2"}
    index, state = result.states["d1"]
    assert index == 0 and state.rules["gas"].active and state.positions == {"0": (5, 3)}


def test_a_replayed_batch_is_skipped_once_its_state_was_written() -> None:
    items = [item("d1", 600, 10 * n) for n in range(4)]
    message = Message(curated_envelope(items, [(0, 5, n) for n in range(4)]))
    first = RUNNER.run_batch([message], flowset(GAS), nothing, T0)
    stored = {"d1": alerts.decode_state(alerts.encode_state(first.states["d1"][1]))}
    again = RUNNER.run_batch([message], flowset(GAS), stored.get, T0)
    assert again.outputs.records("alerts") == []
    assert again.stats == {}  # no flow ran on the repeats


def test_an_expression_error_is_a_dead_letter_of_that_flow_and_others_still_run() -> None:
    broken = ("broken", {"name": "b", "nodes": [{"id": "f", "type": "filter", "expr": "x > 1"}]})
    hook = (
        "hook",
        {"name": "h", "nodes": [{"id": "call", "type": "http", "url": "http://h/${device.id}"}]},
    )
    result = RUNNER.run_batch(
        [Message(curated_envelope([item("d1", 1, 0)]))], flowset(broken, hook), nothing, T0
    )
    (letter,) = [decode_dead_letter(r.value or b"") for r in result.outputs.records("deadletters")]
    assert letter.stage == "flow.broken" and "'f'" in letter.reason
    assert letter.event_id == "d1-0"
    ((call, _),) = result.calls
    assert call.target == "http://h/d1"
    assert (result.stats["broken"].errors, result.stats["hook"].runs) == (1, 1)


def test_unreadable_envelopes_are_dead_lettered_and_no_flows_means_no_work() -> None:
    result = RUNNER.run_batch([Message(b"not json")], flowset(GAS), nothing, T0)
    (letter,) = result.outputs.records("deadletters")
    assert decode_dead_letter(letter.value or b"").stage == "flows"
    empty = RUNNER.run_batch([Message(b"not json")], FlowSet(), nothing, T0)
    assert empty.outputs.by_topic == {} and empty.states == {}


def test_a_bad_item_is_its_own_dead_letter_and_the_items_after_it_keep_their_place() -> None:
    """The envelope is read whole; the items after a bad one keep their index, bytes and
    position (in the letters of a failing flow and in the device's state)."""
    broken = ("broken", {"name": "b", "nodes": [{"id": "f", "type": "filter", "expr": "x > 1"}]})
    bad = b'{"event_id":"bad","device_id":"d1"}'  # no ts, no sensors
    items = [item("d1", 1, 0), bad, item("d1", 1, 20)]
    message = Message(curated_envelope(items, [(0, 7, n) for n in range(3)]))

    result = RUNNER.run_batch([message], flowset(broken), nothing, T0)

    letters = [decode_dead_letter(r.value or b"") for r in result.outputs.records("deadletters")]
    by_stage = sorted(((x.stage, x.item, x.original) for x in letters), key=lambda x: x[1] or 0)
    assert by_stage == [
        ("flow.broken", 0, items[0]),
        ("flows", 1, bad),
        ("flow.broken", 2, items[2]),
    ]
    assert result.states["d1"][1].positions == {"0": (7, 2)}


def call(kind: str = "http", retries: int = 2) -> Outbound:
    return Outbound(
        flow_id="f",
        flow_version=1,
        node_id="n",
        kind=kind,  # type: ignore[arg-type]
        target="t",
        body=b"{}",
        device_id="d",
        event_id="e",
        call_id="c",
        retries=retries,
        backoff_s=0.01,
        timeout_s=1.0,
    )


class Flaky:
    def __init__(self, failures: list[CallFailed]) -> None:
        self.failures = failures
        self.attempts = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, _call: Outbound) -> None:
        self.attempts += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.failures:
                raise self.failures.pop(0)
        finally:
            self.in_flight -= 1


async def no_sleep(_: float) -> None:
    return None


async def test_retriable_failures_are_retried_then_given_up_with_the_reason() -> None:
    down = CallFailed("connection refused", retriable=True)
    sender = Flaky([down, down, down, down])
    (failure,) = await Dispatcher({"http": sender}, 4, sleep=no_sleep).run([call(retries=2)])
    assert (failure.attempts, failure.error.reason, sender.attempts) == (3, "connection refused", 3)
    recovers = Flaky([down])
    assert await Dispatcher({"http": recovers}, 4, sleep=no_sleep).run([call()]) == []
    assert recovers.attempts == 2


async def test_permanent_failures_are_not_retried_and_concurrency_is_bounded() -> None:
    sender = Flaky([CallFailed("HTTP 404", retriable=False)])
    failures = await Dispatcher({"http": sender}, 2, sleep=no_sleep).run(
        [call() for _ in range(10)]
    )
    assert [f.attempts for f in failures] == [1]
    assert sender.attempts == 10 and sender.most_in_flight <= 2


class FakeProducer:
    def __init__(self, topics: set[str]) -> None:
        self.topics = topics
        self.sent: list[tuple[str, Record]] = []

    async def produce_all(self, topic: str, records: Any) -> None:
        self.sent += [(topic, record) for record in records]

    async def partition_count(self, topic: str, timeout_s: float = 10.0) -> int:
        if topic not in self.topics:
            raise KafkaUnavailable(f"topic {topic} does not exist")
        return 1


CHANGELOG = "fleetstream-device-status-changelog"


@pytest.mark.parametrize(
    ("topic", "refused"),
    [("ext", False), ("missing", True), (CHANGELOG, True), ("__consumer_offsets", True)],
)
async def test_kafka_nodes_write_only_to_existing_topics_outside_the_pipeline(
    topic: str, refused: bool
) -> None:
    producer = FakeProducer({"ext", "fleet.raw.v1", CHANGELOG, "__consumer_offsets"})

    async def get() -> FakeProducer:
        return producer

    settings = Settings()
    sender = KafkaSender(get, lambda topic: kafka_target_refusal(topic, settings))
    target = Outbound(**{**call("kafka").__dict__, "target": topic, "key": b"d"})
    if refused:
        with pytest.raises(CallFailed):
            await sender.send(target)
    else:
        await sender.send(target)
        assert producer.sent[0][1].key == b"d"
    own = Outbound(**{**call("kafka").__dict__, "target": "fleet.raw.v1"})
    with pytest.raises(CallFailed, match="pipeline"):
        await sender.send(own)


@dataclass
class StoredFlows:
    """What :class:`CompiledFlows` reads of the ``fleet.flows.v1`` cache."""

    flows: dict[str, FlowDocument]
    generation: int = 1

    def documents(self) -> dict[str, FlowDocument]:
        return self.flows


def stored(flow_id: str, body: dict[str, Any]) -> FlowDocument:
    return FlowDocument(
        flow_id=flow_id,
        version=1,
        enabled=True,
        definition=decode_definition(body),  # the structure; CEL is compiled by the worker
        created_at=T0,
        updated_at=T0,
    )


def test_a_stored_flow_that_no_longer_compiles_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deep = "xs.map(a, xs.map(b, xs.map(c, a))).size() > 0"  # stored before the cost limit
    old = {"name": "old", "nodes": [{"id": "deep", "type": "filter", "expr": deep}]}
    cache = StoredFlows({"gas": stored("gas", GAS_ABOVE_500), "old": stored("old", old)})
    flows = CompiledFlows(cast(FlowCache, cache)).refresh()
    assert [flow.flow_id for flow in flows.flows] == ["gas"]
    assert "flow old v1 does not compile: nodes[0].expr: node 'deep'" in caplog.text

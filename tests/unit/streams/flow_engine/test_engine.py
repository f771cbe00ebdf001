"""Flow definitions, compilation and runs: checked errors, traces, outbound calls, templates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from schemas.errors import ValidationFailure
from schemas.flows import FlowDocument, decode_definition
from streams.flow_engine.catalog import FlowSet
from streams.flow_engine.engine import CompiledFlow, ReadingView, compile_flow
from streams.flow_engine.examples import examples

TS = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)


def document(body: dict[str, Any], flow_id: str = "f1", version: int = 1) -> FlowDocument:
    return FlowDocument(
        flow_id=flow_id,
        version=version,
        enabled=True,
        definition=decode_definition(body),
        created_at=TS,
        updated_at=TS,
    )


def flow(nodes: list[dict[str, Any]], **extra: Any) -> CompiledFlow:
    return compile_flow(document({"name": "t", "nodes": nodes, **extra}))


def view(sensors: dict[str, Any] | None = None, **device: Any) -> ReadingView:
    return ReadingView(
        event_id="e-1",
        device_id="esp32-1",
        ts=TS,
        sensors=sensors if sensors is not None else {"mq134": {"gas_concentration": 620.0}},
        metadata=None,
        device={"id": "esp32-1", "name": "Lobby", "tags": ["lobby"], **device},
    )


def errors_of(body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationFailure) as caught:
        compile_flow(document(body))
    return [(error.loc, error.message) for error in caught.value.errors]


def test_structural_errors_name_the_node_and_the_field() -> None:
    body = {
        "name": "t",
        "nodes": [
            {"id": "ok", "type": "filter", "expr": "true"},
            {"id": "hook", "type": "http", "url": "http://x", "timeout_s": 500},
        ],
    }
    with pytest.raises(ValidationFailure) as caught:
        decode_definition(body)
    (error,) = caught.value.errors
    assert error.loc == ("nodes", 1, "timeout_s")
    assert "node 'hook'" in error.message


def test_unknown_node_types_list_the_known_ones() -> None:
    with pytest.raises(ValidationFailure) as caught:
        decode_definition({"name": "t", "nodes": [{"id": "a", "type": "shell"}]})
    (error,) = caught.value.errors
    assert error.loc == ("nodes", 0, "type")
    assert "filter" in error.message and "alert" in error.message


def test_semantic_errors_duplicate_ids_alert_not_last_bad_timezone() -> None:
    body = {
        "name": "t",
        "nodes": [
            {
                "id": "a",
                "type": "alert",
                "condition": "true",
                "schedule": {"start": "22:00", "end": "06:00", "timezone": "Mars/Olympus"},
            },
            {"id": "a", "type": "filter", "expr": "true"},
        ],
    }
    with pytest.raises(ValidationFailure) as caught:
        decode_definition(body)
    found = {(error.loc, error.type) for error in caught.value.errors}
    assert (("nodes", 0, "type"), "value") in found  # alert must be last
    assert (("nodes", 1, "id"), "duplicate") in found
    assert (("nodes", 0, "schedule"), "timezone") in found


def test_expressions_and_templates_are_compiled_with_their_location() -> None:
    found = errors_of(
        {
            "name": "t",
            "nodes": [
                {"id": "calc", "type": "transform", "set": {"f": "sensors.x *"}},
                {"id": "hook", "type": "http", "url": "http://h/${secret.path}"},
            ],
        }
    )
    assert found[0][0] == ("nodes", 0, "set", "f")
    assert "node 'calc'" in found[0][1] and "CEL" in found[0][1]
    assert found[1][0] == ("nodes", 1, "url")
    assert "${secret.path}" in found[1][1]


def test_a_filter_that_fails_stops_the_run_and_says_so() -> None:
    compiled = flow(
        [
            {"id": "gas", "type": "filter", "expr": "sensors.mq134.gas_concentration > 1000.0"},
            {"id": "hook", "type": "http", "url": "http://h/x"},
        ]
    )
    result = compiled.run(view())
    assert [(step.node_id, step.outcome) for step in result.trace] == [("gas", "stopped")]
    assert result.outbound == []


def test_transform_threshold_and_http_call_with_rendered_templates() -> None:
    compiled = flow(
        [
            {
                "id": "calc",
                "type": "transform",
                "set": {"ppm_k": "sensors.mq134.gas_concentration / 1000.0"},
            },
            {"id": "limit", "type": "threshold", "value": "fields.ppm_k", "above": 0.5},
            {
                "id": "hook",
                "type": "http",
                "method": "PUT",
                "url": "http://127.0.0.1:9/devices/${device.name}/${fields.ppm_k}?x=${device_id}",
                "headers": {"X-Flow": "${flow.id}-v${flow.version}"},
            },
        ]
    )
    result = compiled.run(view(name="Lobby A/1"))
    assert result.error is None
    assert [step.outcome for step in result.trace] == ["passed", "passed", "planned"]
    (call,) = result.outbound
    assert call.method == "PUT"
    assert call.target == "http://127.0.0.1:9/devices/Lobby%20A%2F1/0.62?x=esp32-1"
    assert call.headers == {"X-Flow": "f1-v1"}
    body = msgspec.json.decode(call.body)
    assert body["fields"] == {"ppm_k": 0.62, "limit": 0.62}
    assert body["sensors"]["mq134"]["gas_concentration"] == 620.0
    assert call.call_id == compiled.run(view()).outbound[0].call_id  # stable per reading


def test_a_missing_sensor_field_is_an_evaluation_error_of_that_node() -> None:
    compiled = flow([{"id": "gas", "type": "filter", "expr": "sensors.mq134.raw_value > 5"}])
    result = compiled.run(view())
    assert result.error is not None
    assert result.error.node_id == "gas"
    assert "raw_value" in str(result.error)
    assert result.trace[-1].outcome == "error"


def test_a_filter_must_give_a_bool() -> None:
    result = flow([{"id": "f", "type": "filter", "expr": "1 + 1"}]).run(view())
    assert result.error is not None and "bool" in str(result.error)


def test_mqtt_topic_values_cannot_add_levels_and_kafka_key_defaults_to_device() -> None:
    compiled = flow(
        [
            {"id": "pub", "type": "mqtt", "topic": "alerts/${device.name}/gas", "qos": 0},
            {"id": "out", "type": "kafka", "topic": "ext.gas", "body": "{'v': 1}"},
        ]
    )
    mqtt_call, kafka_call = compiled.run(view(name="a/#/+")).outbound
    assert mqtt_call.target == "alerts/a____/gas"
    assert mqtt_call.qos == 0
    assert kafka_call.key == b"esp32-1"
    assert msgspec.json.decode(kafka_call.body) == {"v": 1}


def test_alert_node_reports_condition_clear_value_and_schedule() -> None:
    gas = compile_flow(document(msgspec.to_builtins(examples()["gas-above-500"]), "gas"))
    signal = gas.run(view()).alert
    assert signal is not None
    assert (signal.condition, signal.clear, signal.value) == (True, False, 620.0)
    assert signal.message == "gas concentration 620.0 ppm on esp32-1 (threshold 500 ppm)"


def test_flow_set_matches_by_device_tag_profile_and_sensor_types() -> None:
    by_id = compile_flow(
        document({"name": "a", "match": {"devices": ["d1"]}, "nodes": [_true()]}, "by-id")
    )
    by_tag = compile_flow(
        document({"name": "b", "match": {"tags": ["lobby"]}, "nodes": [_true()]}, "by-tag")
    )
    by_profile = compile_flow(
        document({"name": "c", "match": {"profiles": ["esp32"]}, "nodes": [_true()]}, "by-prof")
    )
    gas_only = compile_flow(
        document({"name": "d", "match": {"sensors": ["mq134"]}, "nodes": [_true()]}, "gas")
    )
    flows = FlowSet.of([by_id, by_tag, by_profile, gas_only])

    def ids(device: str, tags: list[str], profile: str | None, sensors: list[str]) -> list[str]:
        matched = FlowSet.for_reading(flows.for_device(device, tags, profile), sensors)
        return [f.flow_id for f in matched]

    assert ids("d1", [], None, ["pir"]) == ["by-id"]
    assert ids("d2", ["lobby"], "esp32", ["mq134"]) == ["by-prof", "by-tag", "gas"]
    assert ids("d3", [], "camera", ["pir"]) == []


def _true() -> dict[str, Any]:
    return {"id": "t", "type": "filter", "expr": "true"}


def test_fields_seen_by_later_nodes_and_reset_for_the_next_flow_on_the_same_reading() -> None:
    first = flow(
        [
            {"id": "a", "type": "transform", "set": {"k": "1.0"}},
            {"id": "b", "type": "transform", "set": {"k": "fields.k + 1.0"}},
            {"id": "c", "type": "threshold", "value": "fields.k", "above": 1.5},
        ]
    )
    second = flow([{"id": "empty", "type": "filter", "expr": "size(fields) == 0"}])
    shared = view()
    result = first.run(shared)
    assert result.fields == {"k": 2.0, "c": 2.0}
    assert [step.outcome for step in result.trace] == ["passed", "passed", "passed"]
    assert second.run(shared).trace[0].outcome == "passed"
    assert first.run(shared).fields == {"k": 2.0, "c": 2.0}


CHAIN = {
    "name": "chain",
    "nodes": [
        {"id": "has", "type": "filter", "expr": "has(sensors.mq134)"},
        {"id": "k", "type": "transform", "set": {"k": "sensors.mq134.gas_concentration / 1e3"}},
        {"id": "high", "type": "threshold", "value": "fields.k", "above": 0.1},
        {"id": "hook", "type": "http", "url": "http://127.0.0.1:9/${device.id}/${fields.k}"},
        {"id": "out", "type": "kafka", "topic": "t", "body": "{'k': fields.k}"},
        {"id": "bus", "type": "mqtt", "topic": "a/${device.id}"},
    ],
}
BROKEN = {"name": "broken", "nodes": [{"id": "x", "type": "filter", "expr": "sensors.pir.m"}]}


@pytest.mark.parametrize(
    "definition",
    [*(msgspec.to_builtins(d) for d in examples().values()), CHAIN, BROKEN],
    ids=[*examples(), "chain", "broken"],
)
@pytest.mark.parametrize("ppm", [620.0, 12.0])
def test_an_untraced_run_gives_what_a_traced_one_gives_but_the_steps(
    definition: dict[str, Any], ppm: float
) -> None:
    """The worker runs flows without a trace; only the dry run keeps the steps."""
    compiled = compile_flow(document(definition))
    sensors = {"mq134": {"gas_concentration": ppm}, "ld2410": {"presence": True}}
    traced = compiled.run(view(sensors))
    untraced = compiled.run(view(sensors), trace=False)
    assert traced.trace and untraced.trace == []
    assert untraced.completed == traced.completed
    assert untraced.outbound == traced.outbound
    assert untraced.alert == traced.alert
    assert untraced.fields == traced.fields
    assert str(untraced.error) == str(traced.error)


def test_a_stopped_untraced_run_is_not_completed() -> None:
    stops = flow([{"id": "f", "type": "filter", "expr": "false"}])
    assert not stops.run(view(), trace=False).completed
    assert stops.run(view(), trace=False).trace == []

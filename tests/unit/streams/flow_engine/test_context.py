"""What a reading's CEL context holds: only what the flows' expressions read, with the same
results as the whole reading (``Needs``, ``ReadingView.context``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streams.flow_engine.engine import ReadingView
from streams.flow_engine.expressions import (
    EVERYTHING,
    EvaluationError,
    Expression,
    Needs,
    selected_sensor_types,
)

TS = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
SENSORS = {
    "mq134": {"gas_concentration": 620.0, "raw_value": 900},
    "ld2410": {"presence": True, "distance_cm": 120},
    "pir": {"motion_detected": False},
}


def view(sensors: dict[str, Any] | None = None) -> ReadingView:
    return ReadingView(
        event_id="e-1",
        device_id="esp32-1",
        ts=TS,
        sensors=SENSORS if sensors is None else sensors,
        metadata={"room": "lobby"},
        device={"id": "esp32-1", "name": "Lobby", "tags": ["lobby"], "timezone": "UTC"},
    )


@pytest.mark.parametrize(
    ("source", "types"),
    [
        ("sensors.mq134.gas_concentration > 500.0", {"mq134"}),
        ("has(sensors.ld2410) && sensors . pir.motion_detected", {"ld2410", "pir"}),
        ("sensors.mq134_x.a", {"mq134_x"}),
        ('sensors["mq134"].raw_value', None),
        ("size(sensors) > 2", None),
        ("sensors.exists(k, k == 'pir')", None),
        ("sensors.size() > 2", None),
        ("sensors.?mq134.hasValue()", None),
        ("my_sensors.a + 1", set()),
    ],
)
def test_selected_sensor_types_or_none_when_the_map_is_used_otherwise(
    source: str, types: set[str] | None
) -> None:
    expected = None if types is None else frozenset(types)
    assert selected_sensor_types(source) == expected


EXPRESSIONS = [
    "sensors.mq134.gas_concentration > 500.0",
    "has(sensors.ld2410) ? sensors.ld2410.distance_cm : -1",
    "sensors.pir.motion_detected",  # a missing sensor: the same error either way
    "sensors.mq134.raw_value",  # asked again after other types were handed
    "size(sensors)",
    "sensors.exists(k, k == 'pir')",
    '"mq134" in sensors',
    'device.name + "/" + event_id',
    "device.tags.exists(t, t == 'lobby') && metadata.room == 'lobby'",
    'ts > timestamp("2026-01-01T00:00:00Z")',
    "has(fields.k)",
]


def outcome(expression: Expression, context_of: ReadingView, needs: Needs) -> Any:
    try:
        return expression.evaluate(context_of, {}, needs)
    except EvaluationError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("sensors", [SENSORS, {"mq134": SENSORS["mq134"]}])
def test_each_expression_gives_what_it_gives_on_the_whole_reading(
    sensors: dict[str, Any],
) -> None:
    """One view runs every expression in turn with its own needs (the context grows as a
    reading's flows run); each result must equal the one on a context holding everything."""
    shared = view(sensors)
    for source in EXPRESSIONS:
        expression = Expression(source, node_id="n", loc=("nodes", 0, "expr"))
        alone = outcome(expression, view(sensors), expression.needs)
        grown = outcome(expression, shared, expression.needs)
        whole = outcome(expression, view(sensors), EVERYTHING)
        assert alone == grown == whole, source


def test_the_context_holds_only_the_sensor_types_read() -> None:
    shared = view()
    gas = Expression("sensors.mq134.gas_concentration", node_id="n", loc=("nodes", 0, "x"))
    context = shared.context({}, gas.needs)
    assert context.variables == {"sensors": {"mq134": SENSORS["mq134"]}}

    presence = Expression("sensors.ld2410.presence", node_id="n", loc=("nodes", 0, "x"))
    context = shared.context({}, presence.needs | gas.needs)
    assert set(context.variables["sensors"]) == {"mq134", "ld2410"}

    context = shared.context({}, EVERYTHING)
    assert context.variables["sensors"] == SENSORS
    assert set(context.variables) == {"sensors", "device", "ts", "event_id", "metadata", "fields"}


def test_fields_are_handed_again_when_a_node_changed_them_or_a_new_run_begins() -> None:
    needs = Needs(frozenset({"fields"}), frozenset())
    shared = view()
    first: dict[str, Any] = {}
    assert shared.context(first, needs).variables["fields"] == {}
    first["k"] = 1.0
    shared.fields_changed()
    assert shared.context(first, needs).variables["fields"] == {"k": 1.0}
    # The next flow's run begins with its own empty fields: the context must not keep k.
    assert shared.context({}, needs).variables["fields"] == {}
    assert shared.context({"j": 2}, needs).variables["fields"] == {"j": 2}


class NoContext:
    """A context source for reads that must not need one."""

    def context(self, fields: dict[str, Any], needs: Needs) -> Any:
        raise AssertionError("CEL was asked")


@pytest.mark.parametrize("value", [1, -7, 2.5, True, "on", None, 2**70, [1, 2], {"a": 1}, (1, 2)])
def test_a_plain_field_read_gives_what_cel_gives(value: Any) -> None:
    plain = Expression("fields.k", node_id="n", loc=("nodes", 0, "value"))
    fields = {"k": value}
    through_cel = plain.program.execute(view().context(fields, EVERYTHING))
    assert plain.evaluate(view(), fields, plain.needs) == through_cel
    assert type(plain.evaluate(view(), fields, plain.needs)) is type(through_cel)


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("fields.k", {}),
        ("fields.k.x", {"k": 1}),
        ("fields.k.x", {"k": {"y": 1}}),
    ],
)
def test_a_plain_field_read_fails_as_cel_fails(source: str, fields: dict[str, Any]) -> None:
    plain = Expression(source, node_id="n", loc=("nodes", 0, "value"))
    through_cel = Expression(f"({source})", node_id="n", loc=("nodes", 0, "value"))
    assert plain.path is not None and through_cel.path is None
    with pytest.raises(EvaluationError) as ours:
        plain.evaluate(view(), fields, plain.needs)
    with pytest.raises(EvaluationError) as cels:
        through_cel.evaluate(view(), fields, through_cel.needs)
    assert str(ours.value) == str(cels.value)


def test_simple_plain_reads_do_not_ask_cel() -> None:
    nested = Expression(" fields . a.b ", node_id="n", loc=("nodes", 0, "value"))
    assert nested.path == ("a", "b")
    assert nested.evaluate(NoContext(), {"a": {"b": 3.5}}, nested.needs) == 3.5
    not_plain = Expression("fields.k + 1", node_id="n", loc=("nodes", 0, "value"))
    assert not_plain.path is None
    with pytest.raises(AssertionError, match="CEL was asked"):
        not_plain.evaluate(NoContext(), {"k": 1}, not_plain.needs)

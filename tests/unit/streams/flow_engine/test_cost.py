"""The static cost limit of CEL expressions: how deep comprehensions nest, judged on the text,
and what a flow with a costlier expression is told."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cel
import pytest

from schemas.errors import ValidationFailure
from schemas.flows import FlowDocument, decode_definition
from streams.flow_engine import cost
from streams.flow_engine.engine import compile_flow
from streams.flow_engine.examples import EXAMPLES

TS = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
THREE_DEEP = "xs.map(a, xs.map(b, xs.map(c, a + b + c)))"
FOUR_DEEP = "xs.map(a, xs.map(b, xs.map(c, xs.map(d, a + b + c + d))))"


def document(nodes: list[dict[str, Any]]) -> FlowDocument:
    return FlowDocument(
        flow_id="f",
        version=1,
        enabled=True,
        definition=decode_definition({"name": "t", "nodes": nodes}),
        created_at=TS,
        updated_at=TS,
    )


@pytest.mark.parametrize(
    ("source", "depth"),
    [
        ("sensors.mq134.gas_concentration > 500.0", 0),
        ("device.tags.exists(t, t == 'lobby')", 1),
        ("xs.map(a, xs.map(b, a + b))", 2),
        (THREE_DEEP, 3),
        (FOUR_DEEP, 4),
        ("xs.all(a, xs.exists(b, xs.exists_one(c, a == c)))", 3),
        ("xs.existsOne(a, xs.filter(b, b > a).size() == 1)", 2),
        ("xs.map(a, a > 1, xs.map(b, xs.map(c, c)).size())", 3),  # the 3-argument map
        # one working on another's result is nested in it
        ("xs.filter(x, x > 0).map(x, x * 2)", 2),
        ("xs.filter(x, x > 0).map(x, x * 2).exists(y, y > 3)", 3),
        ("(c ? xs.map(a, a + a) : ys).map(b, b + b).map(d, d)", 3),
        ("[xs.map(a, a)][0].map(b, b).size() > 0 && ys.map(d, d).size() > 0", 2),
        ("{'k': xs.map(a, a)}['k'].map(b, b).map(d, d)", 3),
        ("f(xs.map(a, a)).g[0].map(b, b).map(d, d)", 3),
        ("x.y.Msg{f: xs.map(a, a)}.f.map(b, b).map(d, d)", 3),
        ("m[xs.map(a, a)].map(b, b)", 2),
        ("xs.map(a, a) + ys.map(b, b) + zs.map(d, d)", 1),  # side by side: no nesting
        # macro names in strings and comments are not code ...
        (f"'{THREE_DEEP}'.size()", 0),
        (f'"{THREE_DEEP}" + b"{THREE_DEEP}"', 0),
        (f'"""{THREE_DEEP}""" + r"{THREE_DEEP}"', 0),
        (f"// {THREE_DEEP}\n1", 0),
        # ... and the code around strings and comments is seen as CEL's lexer sees it
        (f'"quoted \\" {THREE_DEEP}" + {THREE_DEEP}', 3),
        (f'r"\\" + {THREE_DEEP}', 3),  # a raw string has no escapes: it ends at its quote
        (f"'''it's''' + {THREE_DEEP}", 3),
        (f'"""a "quote" and \\""" inside""" + {THREE_DEEP}', 3),
        (f"// it's\n{THREE_DEEP} + ['x']", 3),
        ("xs . // the map\n map (a, xs.map(b, xs.map(c, c)))", 3),
        ("size(xs) > 2 && x.mapping == 'small'", 0),
    ],
)
def test_the_depth_of_comprehensions_is_read_from_the_text(source: str, depth: int) -> None:
    cel.compile(source)  # every case is CEL the package accepts
    assert cost.shape_of(source).depth == depth


def test_a_four_deep_map_is_refused_naming_the_node_and_the_field() -> None:
    nodes: list[dict[str, Any]] = [
        {"id": "ok", "type": "filter", "expr": "xs.map(a, xs.map(b, a + b)).size() > 0"},
        {"id": "deep", "type": "filter", "expr": FOUR_DEEP + ".size() > 0"},
        {"id": "calc", "type": "transform", "set": {"fine": "1", "grid": THREE_DEEP}},
    ]
    with pytest.raises(ValidationFailure) as caught:
        compile_flow(document(nodes))
    errors = caught.value.errors
    assert [(error.loc, error.type) for error in errors] == [
        (("nodes", 1, "expr"), "cost"),
        (("nodes", 2, "set", "grid"), "cost"),
    ]
    assert errors[0].message.startswith("node 'deep': comprehensions")
    assert "nest 4 deep, at most 2" in errors[0].message


def test_an_expression_with_a_comprehension_is_bounded_in_length() -> None:
    loop = "xs.map(a, a).size() > 0"
    padding = " && true" * ((cost.MAX_CHARS - len(loop)) // len(" && true"))
    assert cost.refusal(loop + padding) is None
    longer = loop + padding + " && true"
    assert len(longer) > cost.MAX_CHARS
    assert f"at most {cost.MAX_CHARS} characters" in (cost.refusal(longer) or "")
    # without one, an expression is as long as the schema allows: its cost is linear
    assert cost.refusal(" || ".join(["fields.k > 1.0"] * 250)) is None


def test_matches_is_refused_inside_a_comprehension_and_counted() -> None:
    assert cost.refusal("xs.exists(x, x.matches('^a'))") is not None
    assert cost.refusal("[name.matches('^a')].all(x, x)") is not None
    assert cost.refusal("name.matches('^a') && matches(room, 'b$')") is None
    assert "3 times" in (cost.refusal("a.matches('x') || b.matches('y') || c.matches('z')") or "")
    assert cost.refusal("'xs.exists(x, x.matches(a))' == s") is None


def test_text_cel_would_not_parse_is_refused_rather_than_misjudged() -> None:
    assert cost.refusal("xs.map(a, 'open") is not None
    assert cost.refusal("xs.map(a, (a)") is not None


def test_the_shipped_examples_and_depth_two_compile() -> None:
    for flow_id, body in EXAMPLES.items():
        nodes = body["nodes"]
        assert compile_flow(document(nodes)).nodes, flow_id
    two = [{"id": "pairs", "type": "filter", "expr": "xs.map(a, xs.map(b, a + b)).size() > 0"}]
    assert compile_flow(document(two)).nodes

"""The generated Avro writer against fastavro, construct by construct."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import fastavro
import pytest

from schemas.avro_writer import compile_writer

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "test.ns",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "exact", "type": "double"},
        {"name": "text", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["red", "blue"]}},
        {"name": "again", "type": "Colour"},
        {"name": "list", "type": {"type": "array", "items": "long"}},
        {"name": "table", "type": {"type": "map", "values": ["null", "string"]}},
        {"name": "maybe", "type": ["null", "double"], "default": None},
        {"name": "either", "type": ["string", "null", "long", "Colour"]},
        {
            "name": "inner",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Inner",
                    "fields": [
                        {"name": "n", "type": "int", "default": 7},
                        {"name": "tags", "type": {"type": "array", "items": "string"}},
                    ],
                },
            ],
            "default": None,
        },
        {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": "Inner"}}},
        {"name": "stamp", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}

DATUMS: list[dict[str, Any]] = [
    {
        "flag": True, "small": -1, "big": 2**62 + 5, "ratio": 0.5, "exact": -1e300,
        "text": "héllo ✓", "blob": b"\x00\xff", "nothing": None, "colour": "blue",
        "again": "red", "list": [0, -64, 64, 2**40], "table": {"a": None, "b": "x"},
        "maybe": 2.5, "either": ("long", -3),
        "inner": ("test.ns.Inner", {"n": 300, "tags": ["x", ""]}),
        "nested": [{"k": {"tags": []}}, {}], "stamp": 1_764_300_000_123_456,
    },
    {
        "flag": False, "small": 0, "big": -(2**63), "ratio": -0.0, "exact": 0.0, "text": "",
        "blob": b"", "nothing": None, "colour": "red", "again": "blue", "list": [], "table": {},
        "either": None, "inner": {"tags": ["only"]}, "nested": [], "stamp": -1,
    },
    {
        "flag": True, "small": 2**31 - 1, "big": 2**63 - 1, "ratio": 1e10, "exact": 1.5,
        "text": "x" * 300, "blob": b"y" * 200, "nothing": None, "colour": "red",
        "again": "red", "list": [1] * 130, "table": {"k" * 70: "v"}, "maybe": None,
        "either": ("test.ns.Colour", "blue"), "inner": None, "nested": [], "stamp": 0,
    },
]  # fmt: skip


def _fastavro(datum: dict[str, Any]) -> bytes:
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), datum)
    return out.getvalue()


@pytest.mark.parametrize("datum", DATUMS)
def test_generated_writer_writes_fastavros_bytes(datum: dict[str, Any]) -> None:
    out = bytearray()
    compile_writer(SCHEMA)(datum, out)
    assert bytes(out) == _fastavro(datum)


def test_a_string_union_branch_is_chosen_by_name() -> None:
    datum = {**DATUMS[1], "either": ("string", "s")}
    out = bytearray()
    compile_writer(SCHEMA)(datum, out)
    assert bytes(out) == _fastavro(datum)


def test_missing_required_field_and_unknown_branch_raise() -> None:
    write = compile_writer(SCHEMA)
    with pytest.raises(KeyError):
        write({k: v for k, v in DATUMS[0].items() if k != "text"}, bytearray())
    with pytest.raises(ValueError, match="no union branch"):
        write({**DATUMS[0], "either": ("boolean", True)}, bytearray())
    with pytest.raises(KeyError):
        write({**DATUMS[0], "colour": "green"}, bytearray())


def test_an_unknown_named_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Avro type"):
        compile_writer({"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]})

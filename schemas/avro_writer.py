"""A writer generated for one Avro schema: straight-line Python, byte-identical to fastavro's.

fastavro's generic writer walks the schema for every record (type dispatch, union resolution,
logical types per field): ~20 µs for one ``fleet.readings.v1`` reading on our machine, about a
tenth of what the whole worker spends on it. :func:`compile_writer` turns the schema into the
source of one function, once, that writes a datum with no dispatch left: ~2.7x faster
(bench/RESULTS.md, "Avro on fleet.readings.v1"). Unit tests compare its bytes with fastavro's
on readings and on a schema using every construct it supports. ``fleet.readings.v1`` uses it
for readings with sensor types outside the catalogue; the others go through a writer
specialised by hand for that schema (``schemas.avro_codec.ReadingsEncoder``), which shares
the long encoding below (:func:`long_bytes`).

Datums are what fastavro takes, with two restrictions: logical types are ignored (pass their
underlying value: epoch microseconds for ``timestamp-micros``, text for ``uuid``), and a union
other than ``["null", X]`` needs fastavro's tuple notation ``(branch name, value)`` (or None
for its null branch). For ``["null", X]`` a value may be given bare or as a tuple. A record
field missing from the datum takes its default; a missing field without one raises KeyError.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

__all__ = ["AvroWriter", "compile_writer", "long_bytes"]

AvroWriter = Callable[[Any, bytearray], None]
"""Appends the Avro binary encoding of a datum to the bytearray."""

_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "string", "bytes"}
)


def _varint_loop(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# A Python loop per varint byte was the writer's main cost: varints below 2**14 (every small
# int, length and count) come from a table, and 14 bits at a time with continuation bits set
# from another, so an epoch-microseconds timestamp (8 bytes) is four lookups.
_VARINTS: Final = tuple(_varint_loop(value) for value in range(1 << 14))
_CONTINUED_14_BITS: Final = tuple(
    bytes(((value & 0x7F) | 0x80, (value >> 7) | 0x80)) for value in range(1 << 14)
)


def _zigzag(value: int, out: bytearray) -> None:
    """Append ``value`` as an Avro long (zigzag varint; the encoding of fastavro and Java)."""
    out += long_bytes(value)


def long_bytes(value: int) -> bytes:
    """The Avro encoding of the long ``value``."""
    value = (value << 1) ^ (value >> 63)
    if 0 <= value < 0x4000:
        return _VARINTS[value]
    if 1 << 42 <= value < 1 << 56:  # every epoch-microseconds timestamp of 1970-2141
        low = _CONTINUED_14_BITS
        return (
            low[value & 0x3FFF]
            + low[value >> 14 & 0x3FFF]
            + low[value >> 28 & 0x3FFF]
            + (_VARINTS[value >> 42])
        )
    return _varint_loop(value)


_encoded_long = long_bytes


class _Generator:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.consts: dict[str, Any] = {
            "_zz": _zigzag,
            "_pd": struct.Struct("<d").pack,
            "_pf": struct.Struct("<f").pack,
        }
        self._counter = 0

    def var(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def const(self, value: Any) -> str:
        name = self.var("_c")
        self.consts[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def write(self, schema: Any, expr: str, indent: int, namespace: str = "") -> None:
        """Emit the lines that append ``expr`` (a local name) encoded with ``schema``."""
        if isinstance(schema, list):
            self._union(schema, expr, indent, namespace)
            return
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                self._primitive(schema, expr, indent)
                return
            self.write(self._named(schema, namespace), expr, indent, namespace)
            return
        kind = schema["type"]
        if kind in _PRIMITIVES:  # {"type": "long", "logicalType": ...}
            self._primitive(kind, expr, indent)
        elif kind == "record":
            self._record(schema, expr, indent, self._define(schema, namespace))
        elif kind == "enum":
            self._define(schema, namespace)
            symbols = {symbol: _encoded_long(i) for i, symbol in enumerate(schema["symbols"])}
            self.emit(indent, f"out += {self.const(symbols)}[{expr}]")
        elif kind == "array":
            item = self.var("_i")
            self.emit(indent, f"if {expr}:")
            self.emit(indent + 1, f"_zz(len({expr}), out)")
            self.emit(indent + 1, f"for {item} in {expr}:")
            self.write(schema["items"], item, indent + 2, namespace)
            self.emit(indent, "out.append(0)")
        elif kind == "map":
            key, value = self.var("_k"), self.var("_v")
            self.emit(indent, f"if {expr}:")
            self.emit(indent + 1, f"_zz(len({expr}), out)")
            self.emit(indent + 1, f"for {key}, {value} in {expr}.items():")
            self._primitive("string", key, indent + 2)
            self.write(schema["values"], value, indent + 2, namespace)
            self.emit(indent, "out.append(0)")
        else:
            self.write(kind, expr, indent, namespace)  # {"type": <a named type or a schema>}

    def _primitive(self, kind: str, expr: str, indent: int) -> None:
        if kind == "boolean":
            self.emit(indent, f"out.append(1 if {expr} else 0)")
        elif kind in ("int", "long"):
            self.emit(indent, f"_zz({expr}, out)")
        elif kind == "double":
            self.emit(indent, f"out += _pd({expr})")
        elif kind == "float":
            self.emit(indent, f"out += _pf({expr})")
        elif kind == "string":
            text = self.var("_s")
            self.emit(indent, f"{text} = {expr}.encode()")
            self.emit(indent, f"_zz(len({text}), out)")
            self.emit(indent, f"out += {text}")
        elif kind == "bytes":
            self.emit(indent, f"_zz(len({expr}), out)")
            self.emit(indent, f"out += {expr}")
        # "null" writes nothing

    def _record(self, schema: dict[str, Any], expr: str, indent: int, namespace: str) -> None:
        for field in schema["fields"]:
            value = self.var("_f")
            name = field["name"]
            if "default" in field:
                default = self.const(field["default"])
                self.emit(indent, f"{value} = {expr}.get({name!r}, {default})")
            else:
                self.emit(indent, f"{value} = {expr}[{name!r}]")
            self.write(field["type"], value, indent, namespace)

    def _union(self, branches: list[Any], expr: str, indent: int, namespace: str) -> None:
        if len(branches) == 2 and branches[0] == "null":
            self.emit(indent, f"if {expr} is None:")
            self.emit(indent + 1, "out.append(0)")
            self.emit(indent, "else:")
            self.emit(indent + 1, "out.append(2)")
            self.emit(indent + 1, f"if type({expr}) is tuple:")
            self.emit(indent + 2, f"{expr} = {expr}[1]")
            self.write(branches[1], expr, indent + 1, namespace)
            return
        index_of = {self._branch_name(b, namespace): i for i, b in enumerate(branches)}
        if "null" in index_of:
            self.emit(indent, f"if {expr} is None:")
            self.emit(indent + 1, f"out += {_encoded_long(index_of['null'])!r}")
            self.emit(indent, "else:")
            indent += 1
        branch, value = self.var("_b"), self.var("_u")
        self.emit(indent, f"{branch}, {value} = {expr}")
        keyword = "if"
        for i, candidate in enumerate(branches):
            name = self._branch_name(candidate, namespace)
            if name == "null":
                continue
            self.emit(indent, f"{keyword} {branch} == {name!r}:")
            self.emit(indent + 1, f"out += {_encoded_long(i)!r}")
            self.write(candidate, value, indent + 1, namespace)
            keyword = "elif"
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise ValueError('no union branch ' + repr({branch}))")

    def _branch_name(self, schema: Any, namespace: str) -> str:
        if isinstance(schema, str):
            return schema if schema in _PRIMITIVES else self._full_name(schema, namespace)
        if schema["type"] in ("record", "enum", "fixed"):
            return self._full_name(schema["name"], schema.get("namespace", namespace))
        return str(schema["type"])

    @staticmethod
    def _full_name(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def _define(self, schema: dict[str, Any], namespace: str) -> str:
        space = schema.get("namespace", namespace)
        full = self._full_name(schema["name"], space)
        self.names[full] = schema
        return full.rpartition(".")[0]

    def _named(self, name: str, namespace: str) -> Any:
        full = self._full_name(name, namespace)
        if full not in self.names:
            raise ValueError(f"unknown Avro type {name!r}")
        return self.names[full]


def compile_writer(schema: Any) -> AvroWriter:
    """The writer of ``schema`` (a JSON-decoded Avro schema; recursive types unsupported)."""
    generator = _Generator()
    generator.emit(1, "value = datum")
    generator.write(schema, "value", 1)
    source = "def write(datum, out):\n" + "\n".join(generator.lines) + "\n"
    scope: dict[str, Any] = dict(generator.consts)
    exec(compile(source, "<avro writer>", "exec"), scope)  # noqa: S102 - source we generated
    writer: AvroWriter = scope["write"]
    return writer

"""The ``sensors`` part of the readings Avro schema and its writer, derived from the catalogue.

A sensor type is one entry of ``schemas.catalogue.CATALOGUE``. From it come, with no edit here:

* :func:`sensors_schema`: the ``Sensors`` record of ``avro/readings.avsc``: per catalogue type a
  nullable field, a record named after its struct (fields in struct order, each field's
  ``Meta(description=...)`` as its doc) or, for a map of numbers and booleans (``generic``), a
  map; then ``other`` (sensor types outside the catalogue). ``fleetstream schemas generate``
  writes it into ``avro/readings.avsc`` (:func:`readings_schema_text`), and a unit test fails
  while the checked-in file differs from what the catalogue gives.
* :func:`sensors_writer`: straight-line Python, compiled once, that writes the ``Sensors``
  record from the validator's ``Sensors`` struct (or :data:`KnownSensors`), reading its
  attributes: the readings hot path (``schemas.avro_codec.ReadingsEncoder``). Its bytes are
  fastavro's; unit tests compare them on generated readings and edge values.

Struct fields map to Avro as: ``bool`` -> boolean, ``int`` -> int (long when its bounds leave
32 bits), ``float`` -> double, ``str`` -> string; ``X | None = None`` -> ``["null", X]`` with
default null; a one-value ``Literal`` (a constant, e.g. Mq134's ``unit``) is left out.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

import msgspec
from msgspec import inspect

from schemas.avro_writer import long_bytes
from schemas.catalogue import CATALOGUE, SensorType

__all__ = [
    "NULL",
    "SOME",
    "KnownSensors",
    "measures_bytes",
    "optional_string",
    "readings_schema_text",
    "sensors_schema",
    "sensors_writer",
    "string_bytes",
]

Schema = dict[str, Any]
_INT32: Final = (-(2**31), 2**31 - 1)
_OTHER: Final[Schema] = {
    "name": "other",
    "default": {},
    "type": {"type": "map", "values": {"type": "map", "values": ["boolean", "double"]}},
    "doc": "Sensor types outside the catalogue, accepted by the generic rules when the worker "
    "runs with FLEET_STREAM__UNKNOWN_SENSOR_TYPES=generic: sensor type -> field -> value. "
    "Empty otherwise.",
}
_SENSORS_DOC: Final = (
    "Measurements by sensor type; at least one sensor is present. "
    "A sensor the device did not send is null."
)


# --- the schema -----------------------------------------------------------------------------


def sensors_schema() -> Schema:
    """The ``Sensors`` record, from the catalogue."""
    fields = [_sensor_field(sensor) for sensor in CATALOGUE]
    return {"type": "record", "name": "Sensors", "doc": _SENSORS_DOC, "fields": [*fields, _OTHER]}


def _sensor_field(sensor: SensorType) -> Schema:
    info = inspect.type_info(sensor.schema)
    if isinstance(info, inspect.StructType):
        fields = [field for field in map(_field, info.fields) if field is not None]
        record = {"type": "record", "name": info.cls.__name__, "doc": sensor.doc, "fields": fields}
        return {"name": sensor.name, "default": None, "type": ["null", record]}
    if isinstance(info, inspect.DictType) and _measure_types(info.value_type):
        values = {"type": "map", "values": ["boolean", "double"]}
        return {"name": sensor.name, "default": None, "type": ["null", values], "doc": sensor.doc}
    raise TypeError(f"sensor type {sensor.name!r}: no Avro form for {info!r}")


def _measure_types(info: inspect.Type) -> bool:
    """A union of a number and a boolean (generic values)."""
    if not isinstance(info, inspect.UnionType):
        return False
    kinds = {type(_unwrap(member)[0]) for member in info.types}
    return kinds == {inspect.FloatType, inspect.BoolType}


def _unwrap(info: inspect.Type) -> tuple[inspect.Type, str | None]:
    if isinstance(info, inspect.Metadata):
        return info.type, (info.extra_json_schema or {}).get("description")
    return info, None


def _field(field: inspect.Field) -> Schema | None:
    info, doc = _unwrap(field.type)
    optional = False
    if isinstance(info, inspect.UnionType):
        members = [m for m in info.types if not isinstance(m, inspect.NoneType)]
        if len(members) != 1:
            raise TypeError(f"field {field.name!r}: only X | None unions have an Avro form")
        optional = True
        info, inner_doc = _unwrap(members[0])
        doc = doc or inner_doc
    if isinstance(info, inspect.LiteralType) and len(info.values) == 1:
        return None  # a constant carries nothing
    if doc is None:
        raise TypeError(f"field {field.name!r}: give it Meta(description=...) (unit, range)")
    kind = _primitive(field.name, info)
    if optional:
        return {"name": field.name, "type": ["null", kind], "default": None, "doc": doc}
    return {"name": field.name, "type": kind, "doc": doc}


def _primitive(name: str, info: inspect.Type) -> str:
    if isinstance(info, inspect.BoolType):
        return "boolean"
    if isinstance(info, inspect.IntType):
        low = info.ge if info.ge is not None else info.gt
        high = info.le if info.le is not None else info.lt
        fits = low is not None and high is not None and _INT32[0] <= low and high <= _INT32[1]
        return "int" if fits else "long"
    if isinstance(info, inspect.FloatType):
        return "double"
    if isinstance(info, inspect.StrType):
        return "string"
    raise TypeError(f"field {name!r}: no Avro type for {info!r}")


def readings_schema_text(path: Path) -> str:
    """The readings schema file at ``path`` with its ``sensors`` part from the catalogue, as
    ``fleetstream schemas generate`` writes it (the rest of the file is written by hand)."""
    schema = json.loads(path.read_text("utf-8"))
    for field in schema["fields"]:
        if field["name"] == "sensors":
            field["type"] = sensors_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# --- the writer -----------------------------------------------------------------------------

NULL: Final = b"\x00"  # ["null", X]: branch 0 is null, one 0 byte
SOME: Final = b"\x02"  # branch 1 (2 zigzagged) prefixes a value
_BOOLEAN: Final = {True: b"\x01", False: b"\x00"}
_OPTIONAL_BOOLEAN: Final = {None: NULL, True: b"\x02\x01", False: b"\x02\x00"}
_BRANCH_0_BOOLEAN: Final = {True: b"\x00\x01", False: b"\x00\x00"}  # a union's first branch
_OPTIONAL_SMALL_INT: Final = {None: NULL} | {n: SOME + long_bytes(n) for n in range(-64, 4096)}
_pack_double: Final = struct.Struct("<d").pack


def _optional_int(value: int | None) -> bytes:
    encoded = _OPTIONAL_SMALL_INT.get(value)
    return encoded if encoded is not None else SOME + long_bytes(value)  # type: ignore[arg-type]


def _optional_double(value: float | None) -> bytes:
    return NULL if value is None else SOME + _pack_double(value)


def string_bytes(text: str) -> bytes:
    encoded = text.encode()
    return long_bytes(len(encoded)) + encoded


def optional_string(text: str | None) -> bytes:
    return NULL if text is None else SOME + string_bytes(text)


def measures_bytes(values: dict[str, bool | float]) -> bytes:
    """A map of ``["boolean", "double"]``."""
    if not values:
        return NULL
    parts = [long_bytes(len(values))]
    for name, value in values.items():
        parts.append(string_bytes(name))
        if value is True or value is False:
            parts.append(_BRANCH_0_BOOLEAN[value])
        else:
            parts.append(b"\x02" + _pack_double(value))
    parts.append(NULL)
    return b"".join(parts)


_VALUE_EXPRESSIONS: Final = {
    "boolean": "_BOOLEAN[{}]",
    "int": "_long({})",
    "long": "_long({})",
    "double": "_pd({})",
    "string": "_string({})",
    ("null", "boolean"): "_OPTIONAL_BOOLEAN[{}]",
    ("null", "int"): "_optional_int({})",
    ("null", "long"): "_optional_int({})",
    ("null", "double"): "_optional_double({})",
    ("null", "string"): "_optional_string({})",
}
_SCOPE: Final = {
    "_BOOLEAN": _BOOLEAN,
    "_OPTIONAL_BOOLEAN": _OPTIONAL_BOOLEAN,
    "_NULL": NULL,
    "_SOME": SOME,
    "_UNSET": msgspec.UNSET,
    "_long": long_bytes,
    "_pd": _pack_double,
    "_string": string_bytes,
    "_optional_int": _optional_int,
    "_optional_double": _optional_double,
    "_optional_string": optional_string,
    "_measures_bytes": measures_bytes,
}


def _value(field: Schema, expr: str) -> str:
    kind = field["type"]
    return _VALUE_EXPRESSIONS[tuple(kind) if isinstance(kind, list) else kind].format(expr)


def _writer_source(sensors: Schema) -> str:
    lines = ["def write(s):"]
    parts = []
    for index, field in enumerate(sensors["fields"]):
        name, part = field["name"], f"p{index}"
        if name == "other":  # sensor types outside the catalogue take the general path
            parts.append("_NULL")
            continue
        branch = field["type"][1]
        lines.append(f"    x = s.{name}")
        if branch["type"] == "record":
            values = ", ".join(_value(f, f"x.{f['name']}") for f in branch["fields"])
            encoded = f"b''.join((_SOME, {values}))"
        else:  # a map of measures
            encoded = "_SOME + _measures_bytes(x)"
        lines.append(f"    {part} = _NULL if x is None or x is _UNSET else {encoded}")
        parts.append(part)
    lines.append(f"    return b''.join(({', '.join(parts)},))")
    return "\n".join(lines) + "\n"


def sensors_writer() -> Callable[[Any], bytes]:
    """``sensors struct -> bytes`` of the ``Sensors`` record (absent sensors: None or UNSET)."""
    scope = dict(_SCOPE)
    source = _writer_source(sensors_schema())
    exec(compile(source, "<sensors writer>", "exec"), scope)  # noqa: S102 - source we generated
    return cast(Callable[[Any], bytes], scope["write"])


_PYTHON: Final[dict[str, type]] = {
    "boolean": bool,
    "int": int,
    "long": int,
    "double": float,
    "string": str,
}


def _mirror(sensor: SensorType) -> Any:
    """What the writer reads of one sensor type: its Avro fields, without the contract's
    bounds (the writer must not refuse a value the schema takes) and ignoring other keys."""
    info = inspect.type_info(sensor.schema)
    if not isinstance(info, inspect.StructType):
        return dict[str, bool | float]  # a map of measures
    fields: list[Any] = []
    for field in info.fields:
        avro = _field(field)
        if avro is None:
            continue
        kind = avro["type"]
        if isinstance(kind, list):
            fields.append((field.name, _PYTHON[kind[1]] | None, None))
        else:
            fields.append((field.name, _PYTHON[kind]))
    # gc=False: decoded per reading, scalars only, never in a cycle; untracked they make the
    # garbage collector run less often (the sensors decode took twice as long with it).
    name = f"Known{info.cls.__name__}"
    return msgspec.defstruct(name, fields, frozen=True, gc=False, module=__name__)


KnownSensors: Final[type] = msgspec.defstruct(
    "KnownSensors",
    [(s.name, _mirror(s) | msgspec.UnsetType, msgspec.UNSET) for s in CATALOGUE],
    frozen=True,
    forbid_unknown_fields=True,
    gc=False,
    module=__name__,
)
"""Sensors of catalogue types only, decoded from a curated reading's JSON when the validator's
struct is not at hand. ``null`` for a sensor is refused (not read as absent): fastavro refuses
it, so the general path must see it."""

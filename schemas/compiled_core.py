"""The compiled validate core (``native/``, Rust): built from the catalogue, here.

:func:`compiled_core` describes every sensor type of :data:`~schemas.catalogue.CATALOGUE` to
the Rust core from the types themselves (``msgspec.inspect``), so a new sensor type needs no
edit in Rust. What the description cannot say (a field type the core does not read, a
``__post_init__`` rule it does not know) makes that type a *reference* type: readings holding
it go to the Python reference, which stays the only judge of bad input.

The core's contract (``Core.validate``): for each raw record either the curated readings the
reference would write, byte for byte, or ``None`` and the record is left to the reference
(``agents.validate.Validation``), which then also writes every dead letter.

The core also writes each curated reading's ``fleet.readings.v1`` Avro record (the bytes of
``schemas.avro_codec.ReadingsEncoder``) from the layout :func:`avro_layout` reads from
``avro/readings.avsc``; a schema whose shape the core does not know gives no layout, and
Python writes every record.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Final, get_args

import msgspec
from msgspec import inspect

from schemas.avro_codec import registry_bytes, schema_json
from schemas.catalogue import (
    CATALOGUE,
    SENSOR_NAME_MAX,
    SENSOR_NAME_PATTERN,
    Equipment,
    GenericLimits,
    GenericValues,
)
from schemas.envelopes import RAW_FORMAT, envelope_prefix
from schemas.events import Enrichment, Source, UnknownSensors, encoder
from schemas.readings import Metadata

if TYPE_CHECKING:
    from fleetstream_native import Core

__all__ = ["CoreUnavailable", "avro_layout", "compiled_core", "enrichment_avro", "enrichment_json"]

# The rules the core's code knows by name, beyond the field types it reads.
_AT_LEAST_ONE_FIELD: Final = Equipment.__post_init__
_SENSOR_NAME_RULE: Final = r"^[a-z][a-z0-9_]{0,31}\Z"

FieldSpec = tuple[str, str, bool, float | None, float | None, list[str], str | None]
SensorSpec = tuple[str, str, bool, bool, list[FieldSpec], tuple[int, int, int] | None]


class CoreUnavailable(RuntimeError):
    """The compiled core is not installed, or cannot take this catalogue."""


def compiled_core(
    *, unknown_sensors: UnknownSensors, limits: GenericLimits, max_replays: int
) -> Core:
    """A ``fleetstream_native.Core`` for these settings; CoreUnavailable if there is none."""
    try:
        import fleetstream_native  # the extension: built by `make venv` (native/)
    except ImportError as exc:
        raise CoreUnavailable("the compiled core (native/) is not installed") from exc
    if SENSOR_NAME_PATTERN != _SENSOR_NAME_RULE:
        raise CoreUnavailable(
            f"sensor names follow {SENSOR_NAME_PATTERN!r}; the core knows {_SENSOR_NAME_RULE!r}"
        )
    unknown = _generic_spec(inspect.type_info(GenericValues))
    return fleetstream_native.Core(
        raw_prefix=envelope_prefix(RAW_FORMAT),
        sensors=[_sensor_spec(sensor.name, sensor.schema) for sensor in CATALOGUE],
        unknown_types=unknown if unknown_sensors == "generic" else None,
        limits=(limits.fields_per_sensor, limits.fields_per_reading, limits.name_length),
        max_replays=max_replays,
        metadata=_metadata_spec(),
        sources=list(get_args(Source)),
        sensor_name_max=SENSOR_NAME_MAX,
        avro=avro_layout(),
    )


def enrichment_json(enrichment: Enrichment | None) -> bytes:
    """The enrichment fields of a curated reading's JSON, as the reference writes them."""
    extra = enrichment or Enrichment()
    return b"".join(
        (
            b'"device_name":',
            encoder.encode(extra.device_name),
            b',"profile":',
            encoder.encode(extra.profile),
            b',"location":',
            encoder.encode(extra.location),
            b',"tags":',
            encoder.encode(extra.tags),
        )
    )


def enrichment_avro(device_id: str, enrichment: Enrichment | None) -> bytes:
    """The readings' Avro fields ``device_name`` .. ``tags`` of the device's readings, as the
    reference writes them from a curated reading (whose ``location`` went through its JSON)."""
    extra = enrichment or Enrichment()
    location = extra.location
    location_json = None
    if location is not None:
        location_json = msgspec.json.encode(msgspec.json.decode(encoder.encode(location)))
    key = (device_id, extra.device_name, extra.profile, location_json, tuple(extra.tags))
    return registry_bytes(key)


AvroLayout = tuple[list[str], list[tuple[str, list[tuple[str, str, bool]] | None]]]

_TIMESTAMP: Final = {"type": "long", "logicalType": "timestamp-micros"}
_READING_FIELDS: Final[list[tuple[str, Any]]] = [
    ("schema_version", "int"),
    ("event_id", {"type": "string", "logicalType": "uuid"}),
    ("device_id", "string"),
    ("ts", _TIMESTAMP),
    ("received_at", _TIMESTAMP),
    ("source", None),  # an enum: its symbols are read
    ("sensors", None),  # from the catalogue: read below
    ("metadata", ["null", {"type": "map", "values": ["boolean", "long", "double", "string"]}]),
    ("device_name", ["null", "string"]),
    ("profile", ["null", "string"]),
    ("location", ["null", "string"]),
    ("tags", {"type": "array", "items": "string"}),
    ("processed_at", ["null", _TIMESTAMP]),
    ("lag_ms", ["null", "double"]),
    ("replayed", "int"),
]
_AVRO_KINDS: Final = {  # Avro type -> how the core writes it (an int is a long on the wire)
    "boolean": "boolean",
    "int": "long",
    "long": "long",
    "double": "double",
    "string": "string",
}
_MEASURES: Final = {"type": "map", "values": ["boolean", "double"]}


def avro_layout() -> AvroLayout | None:
    """The readings schema as the core writes it: the ``source`` symbols and, per sensor
    type, its record's fields (name, kind, optional) or None for a map of measures; None if
    the schema is not of the shape the core writes."""
    schema = json.loads(schema_json("readings"))
    fields = schema["fields"]
    if [field["name"] for field in fields] != [name for name, _ in _READING_FIELDS]:
        return None
    for field, (_, kind) in zip(fields, _READING_FIELDS, strict=True):
        if kind is not None and _bare(field["type"]) != kind:
            return None
    source, sensors = fields[5]["type"], fields[6]["type"]
    if not isinstance(source, dict) or source.get("type") != "enum":
        return None
    if not isinstance(sensors, dict) or sensors.get("type") != "record":
        return None
    *known, other = sensors["fields"]
    if other["name"] != "other" or _bare(other["type"]) != {"type": "map", "values": _MEASURES}:
        return None
    layout = [_avro_sensor(field) for field in known]
    if any(sensor is None for sensor in layout):
        return None
    return list(source["symbols"]), [sensor for sensor in layout if sensor is not None]


def _avro_sensor(field: dict[str, Any]) -> tuple[str, list[tuple[str, str, bool]] | None] | None:
    kind = _bare(field["type"])
    if not (isinstance(kind, list) and len(kind) == 2 and kind[0] == "null"):
        return None
    if kind[1] == _MEASURES:
        return (field["name"], None)
    if not isinstance(kind[1], dict) or kind[1].get("type") != "record":
        return None
    members: list[tuple[str, str, bool]] = []
    for member in kind[1]["fields"]:
        member_kind = member["type"]
        optional = isinstance(member_kind, list)
        if optional:
            if len(member_kind) != 2 or member_kind[0] != "null":
                return None
            member_kind = member_kind[1]
        if not isinstance(member_kind, str) or member_kind not in _AVRO_KINDS:
            return None
        members.append((member["name"], _AVRO_KINDS[member_kind], optional))
    return (field["name"], members)


def _bare(kind: Any) -> Any:
    """An Avro type without its docs (and names of records left as they are)."""
    if isinstance(kind, list):
        return [_bare(k) for k in kind]
    if isinstance(kind, dict):
        return {k: _bare(v) for k, v in kind.items() if k != "doc"}
    return kind


def _sensor_spec(name: str, schema: Any) -> SensorSpec:
    info = inspect.type_info(schema)
    limited = name == "generic"  # the strict validator bounds this one sensor's fields
    if isinstance(info, inspect.DictType):
        generic = _generic_spec(info)
        return (name, "generic" if generic else "reference", limited, False, [], generic)
    if not isinstance(info, inspect.StructType) or not info.forbid_unknown_fields:
        return (name, "reference", limited, False, [], None)
    post_init = getattr(schema, "__post_init__", None)
    if post_init is not None and post_init is not _AT_LEAST_ONE_FIELD:
        return (name, "reference", limited, False, [], None)
    fields = [_field_spec(field) for field in info.fields]
    if any(field is None for field in fields) or not _omits_defaults(schema):
        return (name, "reference", limited, False, [], None)
    known = [field for field in fields if field is not None]
    return (name, "struct", limited, post_init is not None, known, None)


def _omits_defaults(schema: Any) -> bool:
    config = getattr(schema, "__struct_config__", None)
    return bool(config and config.omit_defaults and not config.array_like)


def _field_spec(field: inspect.Field) -> FieldSpec | None:
    """A struct field as the core reads it; None for a field it cannot read."""
    kind = _unwrap(field.type)
    optional = False
    if isinstance(kind, inspect.UnionType):
        others = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
        if len(others) != 1 or field.default is not None:
            return None
        kind, optional = _unwrap(others[0]), True
    required = field.required
    if not required and not optional and not isinstance(kind, inspect.LiteralType):
        return None  # a non-None default the core would have to write
    if field.encode_name != field.name:
        return None
    spec = _kind_spec(field.name, kind, required)
    if spec is not None and isinstance(field.default, str):  # omitted when written
        spec = (*spec[:6], field.default)
    return spec


def _kind_spec(name: str, kind: Any, required: bool) -> FieldSpec | None:
    if isinstance(kind, inspect.BoolType):
        return (name, "bool", required, None, None, [], None)
    if isinstance(kind, inspect.IntType | inspect.FloatType):
        if kind.gt is not None or kind.lt is not None or kind.multiple_of is not None:
            return None
        low = None if kind.ge is None else float(kind.ge)
        high = None if kind.le is None else float(kind.le)
        return (
            name,
            "float" if isinstance(kind, inspect.FloatType) else "int",
            required,
            low,
            high,
            [],
            None,
        )
    if isinstance(kind, inspect.LiteralType) and all(isinstance(v, str) for v in kind.values):
        return (name, "literal", required, None, None, [str(v) for v in kind.values], None)
    return None


def _generic_spec(info: Any) -> tuple[int, int, int] | None:
    """A map of sensor names to finite floats or booleans: (min, max fields, longest name)."""
    if not isinstance(info, inspect.DictType):
        return None
    key, value = info.key_type, info.value_type
    names = isinstance(key, inspect.StrType) and key.pattern == _SENSOR_NAME_RULE
    kinds = isinstance(value, inspect.UnionType) and sorted(map(_scalar, value.types)) == [
        "bool",
        "finite float",
    ]
    if not (names and kinds):
        return None
    return (info.min_length or 0, info.max_length or 2**31, SENSOR_NAME_MAX)


_METADATA_VALUES: Final = ["bool", "finite float", "int64", "text"]


def _metadata_spec() -> tuple[int, int, int, int]:
    """(entries, shortest key, longest key, longest text) of ``schemas.readings.Metadata``."""
    info = inspect.type_info(Metadata)
    key = getattr(info, "key_type", None)
    values = getattr(getattr(info, "value_type", None), "types", ())
    texts = [t for t in values if isinstance(t, inspect.StrType)]
    if not isinstance(info, inspect.DictType) or not isinstance(key, inspect.StrType):
        raise CoreUnavailable("metadata is not a map of names")
    if key.pattern is not None or sorted(map(_scalar, values)) != _METADATA_VALUES:
        raise CoreUnavailable("metadata values are not what the core reads")
    return (
        info.max_length or 2**31,
        key.min_length or 0,
        key.max_length or 2**31,
        texts[0].max_length or 2**31,
    )


def _scalar(kind: Any) -> str:
    """The kinds of scalar the core's JSON reader tells apart (it refuses anything else:
    integers beyond int64, numbers that are not finite, control characters)."""
    fmax = sys.float_info.max
    if isinstance(kind, inspect.BoolType):
        return "bool"
    if isinstance(kind, inspect.FloatType) and (kind.ge, kind.le) == (-fmax, fmax):
        return "finite float" if kind.gt is kind.lt is kind.multiple_of is None else "?"
    if isinstance(kind, inspect.IntType) and (kind.ge, kind.le) == (-(2**63), 2**63 - 1):
        return "int64" if kind.gt is kind.lt is kind.multiple_of is None else "?"
    if isinstance(kind, inspect.StrType) and kind.pattern is None and not kind.min_length:
        return "text"
    return "?"


def _unwrap(kind: Any) -> Any:
    return kind.type if isinstance(kind, inspect.Metadata) else kind

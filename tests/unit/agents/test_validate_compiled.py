"""The compiled validate core (native/, Rust) against the Python reference (agents.validate).

Both get the same generated raw records (valid, edge-of-range, malformed JSON, wrong types,
unknown sensors, oversize, unicode, NaN/inf, missing fields, duplicate keys) and must give the
same outputs byte for byte: curated envelopes, analytics records (JSON, and the Avro records the
core writes itself), dead letters. The core may leave any record to the reference; the tests
below also check that it does not leave the ordinary ones (a core that left everything would
pass the comparison and do nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.enrichment import Enricher
from agents.validate import Validation
from schemas.avro_codec import ReadingsEncoder
from schemas.catalogue import CATALOGUE, GenericLimits
from schemas.compiled_core import avro_layout, enrichment_avro, enrichment_json
from schemas.devices import Device
from schemas.envelopes import raw_envelope
from schemas.events import Enrichment, decode_curated
from schemas.settings import TopicSettings
from tests import clock
from tests.unit.agents.test_validate import Message, compiled_for

fleetstream_native = pytest.importorskip("fleetstream_native")

TOPICS = TopicSettings()
NOW = clock.now()
NOW_US = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
PLUS_2 = timezone(timedelta(hours=2))
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class _Devices:
    devices: dict[str, Device]

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)


def _device(device_id: str, **fields: Any) -> Device:
    return Device(
        device_id=device_id, token_hash="0" * 64, created_at=NOW, updated_at=NOW, **fields
    )


DEVICES = {
    "esp32-a": _device("esp32-a", name="Lobby ✓", profile="esp32", tags=["a", "é"]),
    "esp32-b": _device("esp32-b", metadata={"location": {"lat": 1.5, "lon": -0.25}}),
    "esp32-off": _device("esp32-off", is_enabled=False),
}


def _pair(**options: Any) -> tuple[Validation, Validation]:
    """(reference, compiled) with the same options, each with an enricher of its own."""
    unknown = options.pop("unknown_devices", "pass")
    made = []
    for compiled in (False, True):
        enricher = Enricher(_Devices(DEVICES), unknown=unknown, disabled="deadletter")
        core = _core(**options) if compiled else None
        made.append(
            Validation(
                TOPICS,
                curated_partitions=4,
                envelope_max_bytes=3000,
                enricher=enricher,
                core=core,
                **options,
            )
        )
    return made[0], made[1]


# --- generated readings ------------------------------------------------------------------------

FMAX = 1.7976931348623157e308
NUMBERS = st.one_of(
    st.integers(-10, 5000),
    st.sampled_from([0, -1, 100, 101, 800, 801, 4095, 4096, 2**53, 2**53 + 1, 2**63, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, -50.0, -50.000001, 200.0, 200.1, 1e-7, 1e16, 10000.0, FMAX]),
)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=5))


def _sensor_fields(schema: Any) -> list[str]:
    info = msgspec.inspect.type_info(schema)
    return [f.name for f in getattr(info, "fields", ())]


@st.composite
def sensor_value(draw: st.DrawFn, name: str) -> Any:
    """A value for sensor ``name``: mostly the right fields, with edge values and mistakes."""
    schema = next((s.schema for s in CATALOGUE if s.name == name), None)
    fields = _sensor_fields(schema) if schema is not None else []
    names = fields or ["co2_ppm", "ok", "t", "Bad", "x" * 33]
    chosen = draw(st.lists(st.sampled_from(names), max_size=len(names) + 1, unique=True))
    value = {key: draw(SCALARS) for key in chosen}
    if draw(st.booleans()):  # mostly well-typed values, so most readings get through
        value = {key: draw(_typed(schema, key)) for key in chosen}
    if draw(st.integers(0, 20)) == 0:
        value["unexpected"] = 1
    return draw(st.sampled_from([value, value, value, None, [], "x", {"nested": {"a": 1}}]))


def _typed(schema: Any, key: str) -> st.SearchStrategy[Any]:
    if key in {"presence", "moving_target", "stationary_target", "motion_detected", "ok"}:
        return st.booleans()
    if key == "unit":
        return st.sampled_from(["ppm", "ppb"])
    return NUMBERS


TIMESTAMPS = st.one_of(
    st.datetimes(
        min_value=datetime(1999, 12, 31), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2000-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-01-01T00:59:59+01:00",
            (NOW + timedelta(days=1)).isoformat(),
            (NOW + timedelta(days=1, microseconds=1)).isoformat(),
            "2026-11-28 12:00:00Z",
            "2026-11-28t12:00:00z",
            "2026-11-28T12:00:00.1234567Z",
            "2026-11-28T12:00:00-00:00",
            "2026-11-28T12:00:00+23:59",
            "2026-11-28T12:00:00",
            "2026-02-29T12:00:00Z",
            "2024-02-29T12:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "not a time",
        ]
    ),
    st.none(),
    st.integers(),
)
DEVICE_IDS = st.sampled_from(
    ["esp32-a", "esp32-b", "esp32-off", "esp32-stranger", "a" * 128, "a" * 129, "-bad", "é", ""]
)
METADATA = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.text(min_size=0, max_size=3), st.sampled_from(["k" * 64, "k" * 65])),
        st.one_of(
            st.text(max_size=4),
            st.sampled_from(["s" * 256, "s" * 257, "ü" * 256, "\U0001f600"]),
            st.integers(min_value=-(2**64), max_value=2**64),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.none(),
        ),
        max_size=34,
    ),
    st.just("not a map"),
)


@st.composite
def reading_body(draw: st.DrawFn) -> dict[str, Any]:
    names = [s.name for s in CATALOGUE] + ["bme280", "Bad-Type", "t" * 33]
    chosen = draw(st.lists(st.sampled_from(names), min_size=0, max_size=4, unique=True))
    body: dict[str, Any] = {
        "device_id": draw(DEVICE_IDS),
        "sensors": {name: draw(sensor_value(name)) for name in chosen},
    }
    optional = {
        "timestamp": TIMESTAMPS,
        "event_id": st.sampled_from([str(uuid.uuid4()), str(uuid.uuid4()).upper(), "x", None]),
        "metadata": METADATA,
        "extra": st.just(1),
    }
    for key, strategy in optional.items():
        if draw(st.integers(0, 3)) > (2 if key == "extra" else 0):
            body[key] = draw(strategy)
    return body


TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=8)
TIMES = st.datetimes(  # valid: from 2000-01-01T00:00Z to less than a day ahead of "now"
    min_value=datetime(2000, 1, 1, 2),
    max_value=(NOW + timedelta(hours=20)).replace(tzinfo=None),
    timezones=st.just(PLUS_2),
)


def _in_range(kind: Any) -> st.SearchStrategy[Any]:
    kind = getattr(kind, "type", kind)  # Metadata(...) around the type
    if isinstance(kind, msgspec.inspect.UnionType):
        return st.one_of([_in_range(t) for t in kind.types])
    if isinstance(kind, msgspec.inspect.NoneType):
        return st.none()
    if isinstance(kind, msgspec.inspect.BoolType):
        return st.booleans()
    if isinstance(kind, msgspec.inspect.LiteralType):
        return st.sampled_from(kind.values)
    if isinstance(kind, msgspec.inspect.IntType):
        return st.integers(kind.ge, kind.le)
    if isinstance(kind, msgspec.inspect.FloatType):
        low, high = kind.ge or 0.0, kind.le or 0.0
        return st.one_of(st.floats(low, high), st.integers(int(low), min(int(high), 10**6)))
    return st.nothing()


def _valid_sensor(name: str) -> st.SearchStrategy[Any]:
    info = msgspec.inspect.type_info(next(s.schema for s in CATALOGUE if s.name == name))
    if isinstance(info, msgspec.inspect.StructType):
        return st.fixed_dictionaries(
            {f.name: _in_range(f.type) for f in info.fields if f.required},
            optional={f.name: _in_range(f.type) for f in info.fields if not f.required},
        ).filter(lambda value: name != "equipment" or any(v is not None for v in value.values()))
    names = st.from_regex(r"\A[a-z][a-z0-9_]{0,6}\Z")
    values = st.one_of(st.booleans(), st.floats(-1e300, 1e300), st.integers(-(2**53), 2**53))
    return st.dictionaries(names, values, min_size=1, max_size=4)


@st.composite
def valid_body(draw: st.DrawFn) -> dict[str, Any]:
    """A reading the reference accepts (edge-of-range values, unicode, offsets)."""
    names = draw(st.lists(st.sampled_from([s.name for s in CATALOGUE]), min_size=1, unique=True))
    body: dict[str, Any] = {
        "device_id": draw(st.sampled_from(["esp32-a", "esp32-b", "esp32-c", "a.b:c_d-9"])),
        "sensors": {name: draw(_valid_sensor(name)) for name in names},
        "timestamp": draw(st.one_of(st.none(), TIMES.map(lambda d: d.isoformat()))),
    }
    if draw(st.booleans()):
        values = st.one_of(
            TEXT, st.integers(-(2**63), 2**63 - 1), st.floats(-1e308, 1e308), st.booleans()
        )
        keys = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=5)
        body["metadata"] = draw(st.dictionaries(keys, values, max_size=4))
    return body


@st.composite
def item_json(draw: st.DrawFn) -> bytes:
    """One raw item (a RawEvent as the edge writes it), sometimes damaged."""
    body = draw(st.one_of(valid_body(), valid_body(), reading_body()))
    # mostly the envelope's device is the reading's
    device = body["device_id"] if draw(st.integers(0, 3)) > 0 else draw(DEVICE_IDS)
    received = NOW - timedelta(
        seconds=draw(st.integers(-100, 10**8)), microseconds=draw(st.integers(0, 999_999))
    )
    item: dict[str, Any] = {
        "event_id": draw(
            st.sampled_from([str(uuid.uuid4()), str(uuid.uuid4()).upper(), "nope", "x" * 36])
        ),
        "device_id": device,
        "received_at": draw(
            st.sampled_from(
                [
                    received.isoformat(),
                    received.isoformat(),
                    received.astimezone(PLUS_2).isoformat(),
                    "2026-11-28T12:00:00",
                    "0001-01-01T00:30:00+01:00",
                ]
            )
        ),
        "source": draw(st.sampled_from(["http", "mqtt", "upload", "kafka", "http", "ftp"])),
        "payload": body,
    }
    extras: dict[str, list[Any]] = {
        "schema": [1, 2, "1"],
        "replayed": [0, 1, 2, -1, "1"],
        "unknown_envelope_field": [{"a": [1, 2]}],
    }
    for key, values in extras.items():
        if draw(st.integers(0, 7)) == 0:
            item[key] = draw(st.sampled_from(values))
    if draw(st.integers(0, 30)) == 0:
        item.pop(draw(st.sampled_from(sorted(item))))
    return draw(_damaged(msgspec.json.encode(item)))


@st.composite
def clean_item_json(draw: st.DrawFn) -> bytes:
    body = draw(valid_body())
    item = {
        "event_id": str(draw(st.uuids())),
        "device_id": body["device_id"],
        "received_at": (NOW - timedelta(microseconds=draw(st.integers(0, 10**12)))).isoformat(),
        "source": draw(st.sampled_from(["http", "mqtt", "upload", "kafka"])),
        "payload": body,
    }
    return msgspec.json.encode(item)


@st.composite
def _damaged(draw: st.DrawFn, text: bytes) -> bytes:
    """``text``, or a copy with duplicate keys, escapes, broken JSON or huge numbers."""
    kind = draw(st.integers(0, 30))
    if kind == 0:  # a duplicate key
        return text.replace(b'{"device_id":', b'{"device_id":"esp32-a","device_id":', 1)
    if kind == 1:  # escapes: unicode, surrogate pairs, a lone surrogate, control characters
        escape = draw(
            st.sampled_from(
                [
                    r"\u00e9",
                    r"\ud83d\ude00",
                    r"\ud800",
                    r"\u0007",
                    r"\u0085",
                    r"\n",
                    r"\/",
                    r"\"",
                    "\x7f",
                    "\u0085",
                ]
            )
        )
        return text.replace(b'"esp32-', b'"esp32' + escape.encode() + b"-", 1)
    if kind == 2:  # truncated
        return text[: draw(st.integers(0, len(text)))]
    if kind == 3:  # NaN / inf / huge numbers where numbers go
        token = draw(
            st.sampled_from(
                [
                    b"NaN",
                    b"Infinity",
                    b"1e999",
                    b"-1e999",
                    b"1e400",
                    b"01",
                    b"1.",
                    b"-",
                    b"1E2",
                    b"99999999999999999999",
                ]
            )
        )
        return text.replace(b":true", b":" + token, 1).replace(b":false", b":" + token, 1)
    if kind == 4:  # whitespace the edge never writes
        return text.replace(b",", b" ,\n\t", 2)
    if kind == 5:  # invalid UTF-8
        return text.replace(b"esp32", b"esp\xff32", 1)
    return text


@st.composite
def raw_record(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 16))
    if kind == 0:
        return draw(st.sampled_from([None, b"", b"{", b"[]", b"null", b'{"format":"x"}']))
    if kind == 1:  # a bare reading (an older format)
        return msgspec.json.encode(draw(reading_body()))
    if kind >= 11:  # records the edge writes: every item valid
        return raw_envelope(draw(st.lists(clean_item_json(), min_size=1, max_size=4)))
    items = draw(st.lists(item_json(), min_size=0, max_size=4))
    value = raw_envelope(items)
    if kind == 2:
        return value + b' ,"more":1'
    if kind == 3:
        return value[:-1] + b',"extra":[1,{"a":null}]}'
    if kind == 4:
        return value + b"  \n"
    return value


def _compare(batch: Sequence[bytes | None], **options: Any) -> list[Any]:
    reference, compiled = _pair(**options)
    messages = [Message(value, partition=3, offset=n) for n, value in enumerate(batch)]
    expected = reference.run(messages, NOW)
    assert compiled.run(messages, NOW).by_topic == expected.by_topic
    return [len(expected.records(topic)) for topic in (TOPICS.readings, TOPICS.deadletter)]


POLICIES = st.fixed_dictionaries(
    {
        "unknown_sensors": st.sampled_from(["deadletter", "generic"]),
        "unknown_devices": st.sampled_from(["pass", "deadletter"]),
        "max_replays": st.integers(0, 2),
        "generic_limits": st.sampled_from(
            [
                GenericLimits(),
                GenericLimits(fields_per_sensor=2, fields_per_reading=3, name_length=4),
            ]
        ),
    }
)


@EXAMPLES
@given(batch=st.lists(raw_record(), max_size=5), options=POLICIES)
def test_the_compiled_core_writes_what_the_reference_writes(
    batch: list[bytes | None], options: dict[str, Any]
) -> None:
    _compare(batch, **options)


AVRO = ReadingsEncoder(b"\x00\x00\x00\x00\x07")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(raw_record(), min_size=1, max_size=4), options=POLICIES)
def test_the_compiled_core_matches_the_reference_in_avro_too(
    batch: list[bytes | None], options: dict[str, Any]
) -> None:
    """The core's own Avro records (every sensor type, optional fields absent or null,
    metadata of every kind, enrichment with unicode and locations) are the reference
    encoder's bytes. Catches a field written in the wrong order, a wrong union branch, an
    int zigzagged wrongly, a lag computed differently from the JSON's."""
    _compare(batch, readings_encoder=AVRO, **options)


# --- the core takes ordinary records itself ----------------------------------------------------


def _valid_item(device: str, n: int, **payload: Any) -> bytes:
    body = {
        "device_id": device,
        "timestamp": (NOW - timedelta(seconds=n, microseconds=n * 7)).isoformat(),
        "sensors": {
            "ld2410": {"presence": True, "distance_cm": n % 800, "moving_energy": n % 101},
            "pir": {"motion_detected": n % 2 == 0},
            "mq134": {"gas_concentration": n / 7, "unit": "ppm"},
            "equipment": {"temperature": -50 + n % 250, "rpm": 1e5},
            "generic": {"co2_ppm": n, "door_open": False},
        },
        **payload,
    }
    item = {
        "event_id": str(uuid.uuid4()).upper(),
        "device_id": device,
        "received_at": (NOW - timedelta(milliseconds=n)).isoformat(),
        "source": "mqtt",
        "payload": body,
    }
    return msgspec.json.encode(item)


def _core(**options: Any) -> Any:
    return compiled_for(options)


def _enrich(device_id: str) -> bytes:
    return enrichment_json(Enrichment(device_name=device_id))


def test_the_core_curates_valid_envelopes_itself() -> None:
    values = [
        raw_envelope([_valid_item(f"esp32-{n % 3}", n) for n in range(m, m + 5)])
        for m in range(0, 50, 5)
    ]
    results = _core().validate(values, NOW_US, _enrich)
    assert all(result is not None and len(result) == 5 for result in results)
    assert all(isinstance(item, tuple) for result in results for item in result or [])
    _compare(values)


def test_the_core_leaves_a_bad_item_to_the_reference_and_curates_the_rest() -> None:
    good = _valid_item("esp32-a", 1)
    bad = _valid_item("esp32-a", 2, sensors={"pir": {"motion_detected": 1}})
    ((curated, left),) = _core().validate([raw_envelope([good, bad])], NOW_US, _enrich)
    assert isinstance(curated, tuple) and curated[0] == "esp32-a"
    assert left == bad
    assert _compare([raw_envelope([good, bad])]) == [1, 1]


def test_records_the_core_cannot_read_are_left_whole_to_the_reference() -> None:
    good = _valid_item("esp32-a", 1)
    values = [None, good, raw_envelope([good])[:-1], raw_envelope([good, b'{"a":1,"a":2}'])]
    assert _core().validate(values, NOW_US, _enrich) == [None] * 4
    assert _compare(values) == [2, 3]


def test_the_core_leaves_refused_devices_to_the_reference() -> None:
    item = _valid_item("esp32-a", 1)
    assert _core().validate([raw_envelope([item])], NOW_US, lambda _: None) == [[item]]
    assert _compare([raw_envelope([_valid_item("esp32-off", 1)])]) == [0, 1]


def test_unknown_sensor_types_are_curated_by_the_core_only_under_the_generic_rules() -> None:
    item = _valid_item("esp32-a", 1, sensors={"bme280": {"t": 21.5, "ok": True}})
    value = raw_envelope([item])
    assert _core().validate([value], NOW_US, _enrich) == [[item]]
    ((curated,),) = _core(unknown_sensors="generic").validate([value], NOW_US, _enrich) or [[]]
    assert isinstance(curated, tuple)
    assert _compare([value], unknown_sensors="generic") == [1, 0]
    assert _compare([value]) == [0, 1]


def _spliced(device_id: str) -> tuple[bytes, bytes]:
    enrichment = Enrichment(device_name=device_id, location={"lat": 1.5}, tags=["é"])
    return enrichment_json(enrichment), enrichment_avro(device_id, enrichment)


def test_the_core_writes_the_avro_records_of_ordinary_readings_itself() -> None:
    """Every ordinary reading comes back with its Avro value, the reference encoder's bytes of
    its curated JSON. Catches a core that leaves the Avro to Python (the comparison above
    would pass) and a layout that stopped matching ``avro/readings.avsc``."""
    assert avro_layout() is not None
    values = [
        raw_envelope([_valid_item(f"esp32-{n % 3}", n, metadata={"k": n, "f": 0.5, "s": "ü"})])
        for n in range(20)
    ]
    results = _core().validate(values, NOW_US, _spliced, AVRO.prefix)
    items = [item for result in results for item in result or []]
    assert len(items) == 20
    for item in items:
        assert isinstance(item, tuple)
        _, curated, value = item
        assert value is not None
        assert value == AVRO(decode_curated(curated))


def test_without_avro_fields_or_a_prefix_the_core_writes_no_avro() -> None:
    """JSON-only enrichment, or no prefix: no Avro value (Python writes it). Catches a core
    that writes a record without the registry's fields, or unframed."""
    value = raw_envelope([_valid_item("esp32-a", 1)])
    ((json_only,),) = _core().validate([value], NOW_US, _enrich, AVRO.prefix) or [[]]
    ((no_prefix,),) = _core().validate([value], NOW_US, _spliced) or [[]]
    assert isinstance(json_only, tuple) and json_only[2] is None
    assert isinstance(no_prefix, tuple) and no_prefix[2] is None


def test_sensor_types_outside_the_catalogue_leave_the_avro_record_to_python() -> None:
    """Under the generic rules the core curates an unknown sensor type, but its Avro record
    (the ``other`` map) is Python's. Catches a core that drops such sensors from the record."""
    item = _valid_item("esp32-a", 1, sensors={"bme280": {"t": 21.5, "ok": True}})
    core = _core(unknown_sensors="generic")
    ((curated,),) = core.validate([raw_envelope([item])], NOW_US, _spliced, AVRO.prefix) or [[]]
    assert isinstance(curated, tuple) and curated[2] is None
    assert _compare([raw_envelope([item])], unknown_sensors="generic", readings_encoder=AVRO) == [
        1,
        0,
    ]


def test_a_registry_update_reaches_the_next_batch() -> None:
    """The core's enrichment is kept per registry document: a device renamed (a new document)
    is enriched anew in the next batch, by both paths alike. Catches a cache keyed by the
    device id alone, which would keep the old name."""
    devices = dict(DEVICES)
    made = [
        Validation(
            TOPICS,
            curated_partitions=4,
            envelope_max_bytes=3000,
            enricher=Enricher(_Devices(devices), unknown="pass", disabled="deadletter"),
            core=_core() if compiled else None,
            readings_encoder=AVRO,
        )
        for compiled in (False, True)
    ]
    message = Message(raw_envelope([_valid_item("esp32-a", 1)]), partition=3, offset=0)
    before = [step.run([message], NOW).by_topic for step in made]
    devices["esp32-a"] = _device("esp32-a", name="Renamed", profile="esp32")
    after = [step.run([message], NOW).by_topic for step in made]
    assert before[0] == before[1] and after[0] == after[1]
    assert before[1] != after[1]
    (record,) = after[1][TOPICS.readings]
    assert b"Renamed" in (record.value or b"")


def test_a_readings_value_that_does_not_encode_is_a_dead_letter_from_the_reference() -> None:
    def failing(reading: Any) -> bytes:
        raise ValueError(f"reading {reading.event_id} does not fit")

    values = [raw_envelope([_valid_item("esp32-a", n) for n in range(3)])]
    assert _compare(values, readings_encoder=failing) == [0, 3]


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_written_as_msgspec_writes_them(value: float) -> None:
    written = fleetstream_native.format_float(value)
    assert written is None or written == msgspec.json.encode(value).decode()


@pytest.mark.parametrize("value", [0.0, -0.0, 1e-5, 1e-6, 1e15, 1e16, 5e-324, FMAX, 0.1, 100.0])
def test_floats_at_the_notation_boundaries(value: float) -> None:
    assert fleetstream_native.format_float(value) == msgspec.json.encode(value).decode()


@pytest.mark.parametrize("value", [2**-24, 2**49 + 0.25, 101609401321763.125])
def test_floats_halfway_between_two_shortest_forms_are_left_to_the_reference(
    value: float,
) -> None:
    assert fleetstream_native.format_float(value) is None
    item = _valid_item("esp32-a", 1, sensors={"generic": {"x": value}})
    assert _core().validate([raw_envelope([item])], NOW_US, _enrich) == [[item]]
    assert _compare([raw_envelope([item])]) == [1, 0]

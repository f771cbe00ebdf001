"""The readings schema's sensors part and its writer come from the catalogue, nothing else."""

from __future__ import annotations

import io
from typing import Annotated, Any

import fastavro
import msgspec
import pytest
from msgspec import Meta

from cli.contracts_commands import READINGS_SCHEMA
from schemas import avro_sensors
from schemas.avro_sensors import readings_schema_text, sensors_schema, sensors_writer
from schemas.catalogue import CATALOGUE, Contract, SensorType


def test_the_checked_in_readings_schema_is_what_the_catalogue_generates() -> None:
    assert READINGS_SCHEMA.read_text("utf-8") == readings_schema_text(READINGS_SCHEMA), (
        "run `fleetstream schemas generate` and commit schemas/avro/readings.avsc"
    )


class Soil(Contract, frozen=True):
    moisture: Annotated[float, Meta(ge=0.0, le=1.0, description="Volumetric water, 0..1.")]
    probe: Annotated[int, Meta(description="Probe number.")]
    wet: Annotated[bool, Meta(description="Above field capacity.")] | None = None
    label: Annotated[str, Meta(description="Where it is.")] | None = None


SOIL = SensorType("soil", Soil, "soil probe", "test", "A soil moisture probe.")


@pytest.fixture
def with_soil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avro_sensors, "CATALOGUE", (*CATALOGUE, SOIL))


def _record(name: str) -> dict[str, Any]:
    (field,) = [f for f in sensors_schema()["fields"] if f["name"] == name]
    return field  # type: ignore[no-any-return]


@pytest.mark.usefixtures("with_soil")
def test_a_new_catalogue_entry_is_a_new_nullable_record_with_its_fields_docs_and_types() -> None:
    soil = _record("soil")
    assert soil["default"] is None and soil["type"][0] == "null"
    record = soil["type"][1]
    assert (record["name"], record["doc"]) == ("Soil", "A soil moisture probe.")
    assert [(f["name"], f["type"], f.get("default", "none")) for f in record["fields"]] == [
        ("moisture", "double", "none"),
        ("probe", "long", "none"),  # no bounds: does not fit Avro's 32-bit int
        ("wet", ["null", "boolean"], None),
        ("label", ["null", "string"], None),
    ]
    assert record["fields"][0]["doc"] == "Volumetric water, 0..1."
    assert [f["name"] for f in sensors_schema()["fields"]][-2:] == ["soil", "other"]


@pytest.mark.usefixtures("with_soil")
def test_the_generated_writer_writes_a_new_type_as_fastavro_does() -> None:
    sensors_struct = msgspec.defstruct(
        "S", [(s.name, s.schema | None, None) for s in (*CATALOGUE, SOIL)]
    )
    schema = fastavro.parse_schema({**sensors_schema(), "namespace": "t"})
    write = sensors_writer()
    cases = [
        {"soil": Soil(moisture=0.25, probe=-70000, wet=True, label="bed 3")},
        {"soil": Soil(moisture=1.0, probe=3), "pir": CATALOGUE[1].schema(motion_detected=False)},
        {"generic": {"a": 1.5, "b": True}},
    ]
    for sensors in cases:
        datum = {name: _datum(value) for name, value in sensors.items()}
        expected = io.BytesIO()
        fastavro.schemaless_writer(expected, schema, {**datum, "other": {}})
        assert write(sensors_struct(**sensors)) == expected.getvalue(), sensors


def _datum(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return {k: v for k, v in msgspec.structs.asdict(value).items() if k != "unit"}


def test_a_field_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Bare(Contract, frozen=True):
        level: float

    bare = SensorType("bare", Bare, "bare", "test", "No docs.")
    monkeypatch.setattr(avro_sensors, "CATALOGUE", (*CATALOGUE, bare))
    with pytest.raises(TypeError, match="level"):
        sensors_schema()

"""``fleet.readings.v1`` read back in the shape of its JSON contract (``CuratedReading``).

The topic is Avro (Confluent framing) since issue 11; tests that assert on its records as
``CuratedReading`` JSON use this instead of decoding JSON: timestamps as msgspec writes them
(``...Z``), ``location`` as the JSON value, ``sensors`` as the device sent them (no null
fields), ``event_id`` as text.
"""

from __future__ import annotations

import json
from typing import Any

import fastavro
import msgspec

from connectors.schema_registry import client_for
from schemas.avro_codec import decode, framed_schema_id
from schemas.settings import Settings
from tests.integration.kafka_tools import read_to_end


def readings_records(settings: Settings) -> list[dict[str, Any]]:
    """Every record now on the readings topic, decoded with its writer schema."""
    client = client_for(settings)
    schemas: dict[int, Any] = {}
    records = []
    for value in read_to_end(settings.kafka.bootstrap_servers, settings.topics.readings):
        schema_id = framed_schema_id(value)
        if schema_id not in schemas:
            schemas[schema_id] = fastavro.parse_schema(json.loads(client.schema(schema_id)))
        records.append(as_json_contract(decode(value, schemas[schema_id])))
    return records


def as_json_contract(datum: dict[str, Any]) -> dict[str, Any]:
    """An Avro ``Reading`` datum as the JSON ``CuratedReading`` had it."""
    record: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(datum, enc_hook=str))
    sensors = {
        name: {field: value for field, value in values.items() if value is not None}
        for name, values in record["sensors"].items()
        if name != "other" and values is not None
    }
    sensors.update(record["sensors"]["other"])
    record["sensors"] = sensors
    if record["location"] is not None:
        record["location"] = json.loads(record["location"])
    return record

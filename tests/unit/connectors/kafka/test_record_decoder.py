"""Any record as readable data: Avro by the schema id in its frame, JSON, text, bytes."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import fastavro

from connectors.kafka.record_decoder import RecordDecoder
from connectors.schema_registry import SchemaRegistryClient

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Probe",
    "fields": [{"name": "device_id", "type": "string"}, {"name": "n", "type": "long"}],
}


class OneSchema(SchemaRegistryClient):
    """A registry that knows schema 42 and counts how often it was asked."""

    def __init__(self) -> None:
        super().__init__("http://registry.invalid")
        object.__setattr__(self, "asked", [])

    def schema(self, schema_id: int) -> str:
        self.asked.append(schema_id)  # type: ignore[attr-defined]
        return json.dumps(SCHEMA)


def _framed(datum: dict[str, Any], schema_id: int = 42) -> bytes:
    body = BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(SCHEMA), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def test_avro_is_decoded_with_the_schema_of_its_id_fetched_once() -> None:
    registry = OneSchema()
    decoder = RecordDecoder(registry)
    for n in range(3):
        decoded = decoder.decode(_framed({"device_id": "d", "n": n}))
        assert (decoded.format, decoded.schema_id, decoded.value) == (
            "avro",
            42,
            {"device_id": "d", "n": n},
        )
    assert registry.asked == [42]  # type: ignore[attr-defined]


def test_json_text_bytes_and_empty_values() -> None:
    decoder = RecordDecoder(OneSchema())
    assert decoder.decode(b'{"a": [1, 2]}').value == {"a": [1, 2]}
    assert decoder.decode(b'{"a": [1, 2]}').format == "json"
    assert (decoder.decode(b"hello").format, decoder.decode(b"hello").value) == ("text", "hello")
    binary = decoder.decode(b"\xff\xfe\x01")
    assert binary.format == "binary" and binary.value == {"bytes": 3, "hex": "fffe01"}
    assert decoder.decode(None).format == decoder.decode(b"").format == "empty"
    truncated = decoder.decode(_framed({"device_id": "device", "n": 1})[:7])
    assert truncated.format == "binary" and truncated.schema_id == 42

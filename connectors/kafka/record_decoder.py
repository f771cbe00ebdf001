"""Any record of any topic as data a person can read: Confluent-framed Avro decoded with the
writer's schema fetched from the registry by the id in the frame, else JSON, else text, else
a hex preview.

Generic on purpose: it knows no topic and no contract, so it reads whatever schema a producer
registered (a new version of ours, an analytics team's topic). Each schema id is fetched and
parsed once per decoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import fastavro
import msgspec

from connectors.schema_registry import SchemaRegistryClient
from schemas.avro_codec import FramingError, decode, framed_schema_id

Format = Literal["avro", "json", "text", "binary", "empty"]
PREVIEW_BYTES = 64
"""Bytes of an undecodable value shown (as hex)."""


@dataclass(frozen=True)
class Decoded:
    format: Format
    value: Any
    schema_id: int | None = None


class RecordDecoder:
    """Decodes values; an Avro frame whose schema the registry cannot give raises
    :class:`~connectors.schema_registry.SchemaRegistryError`."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self._registry = registry
        self._schemas: dict[int, Any] = {}

    def decode(self, value: bytes | None) -> Decoded:
        if not value:
            return Decoded("empty", None)
        try:
            schema_id = framed_schema_id(value)
        except FramingError:
            return _plain(value)
        try:
            datum = decode(value, self._schema(schema_id))
        except (FramingError, ValueError, EOFError, IndexError) as exc:
            # a JSON or text value cannot start with byte 0; this is Avro that does not decode
            return Decoded(
                "binary",
                {
                    "error": f"not decodable with schema {schema_id}: {exc}",
                    "hex": value[:PREVIEW_BYTES].hex(),
                },
                schema_id,
            )
        return Decoded("avro", datum, schema_id)

    def _schema(self, schema_id: int) -> Any:
        parsed = self._schemas.get(schema_id)
        if parsed is None:
            text = self._registry.schema(schema_id)
            parsed = fastavro.parse_schema(json.loads(text))
            self._schemas[schema_id] = parsed
        return parsed


def _plain(value: bytes) -> Decoded:
    try:
        return Decoded("json", msgspec.json.decode(value))
    except msgspec.DecodeError:
        pass
    try:
        return Decoded("text", value.decode("utf-8"))
    except UnicodeDecodeError:
        return Decoded("binary", {"bytes": len(value), "hex": value[:PREVIEW_BYTES].hex()})

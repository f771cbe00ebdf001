"""OpenAPI for bodies the routes read themselves (msgspec contracts, not pydantic models).

The ingest routes read raw bodies (size limits, NDJSON, exact bytes kept for the event log), so
FastAPI cannot infer their request schemas; they reference these components instead, generated
from the same msgspec structs that validate the bodies.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from schemas.readings import Reading
from schemas.seed_payloads import SEED001_MAX_BATCH, ChirpstackUplink, EquipmentReading

REF = "#/components/schemas/{name}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(
        [Reading, EquipmentReading, ChirpstackUplink], ref_template=REF
    )
    schemas["EquipmentBatch"] = {
        "title": "EquipmentBatch",
        "description": "Seed 001's batch: 1-100 readings.",
        "type": "object",
        "properties": {
            "readings": {
                "type": "array",
                "items": ref("EquipmentReading"),
                "minItems": 1,
                "maxItems": SEED001_MAX_BATCH,
            }
        },
        "required": ["readings"],
        "additionalProperties": False,
    }
    return dict(schemas)


def json_body(schema: dict[str, Any], example: Any = None, **more: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON request body (more media types in ``more``)."""
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if example is not None:
        content["application/json"]["example"] = example
    content.update(more)
    return {"requestBody": {"required": True, "content": content}}


def install_openapi(app: FastAPI) -> None:
    """Merge the msgspec components into the app's generated OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(components())
            app.openapi_schema = document
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010 - FastAPI's documented override

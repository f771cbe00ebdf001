"""Flows over HTTP: ``/api/v1/admin/flows`` (admin token).

Every change is stored in Postgres, then published to ``fleet.flows.v1`` and acked before the
answer (:mod:`connectors.registry`); workers apply it from their next batch. A 503 after a
change means it is stored but not confirmed on the topic: retry the request (it publishes
again, whatever it answers) or run ``fleetstream flows resync``.

A definition that does not validate or compile is a 422 whose ``errors`` name the node and the
field (``definition.nodes.2.timeout_s``, ``"node": "notify"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from api.auth import require_admin
from api.deps import SettingsDep
from api.dry_runs import (
    DryRunnerDep,
    DryRunsBusy,
    DryRunTimeout,
    EvaluatorFailed,
    sample_of,
)
from api.flows import FlowRegistryDep
from api.problems import ProblemError
from api.registry_problems import not_found, registry_errors
from connectors.egress import EgressPolicy, kafka_target_refusal, literal_url_refusal
from schemas.errors import FieldError, ValidationFailure, one_line
from schemas.flows import (
    FLOW_ID_PATTERN,
    FlowDefinition,
    FlowDocument,
    HttpNode,
    KafkaNode,
    decode_definition,
)
from schemas.settings import Settings
from schemas.validation import decode_reading
from streams.flow_engine.dry_run import DryRun, Sample

router = APIRouter(
    prefix="/api/v1/admin/flows", tags=["flows"], dependencies=[Depends(require_admin)]
)

_FLOW_ID = re.compile(FLOW_ID_PATTERN)
JsonObject = Annotated[dict[str, Any], Body()]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_flow(
    body: JsonObject, registry: FlowRegistryDep, settings: SettingsDep
) -> dict[str, Any]:
    """Create a flow: ``{"flow_id": "gas-alarm", "enabled": true, "definition": {...}}``."""
    flow_id = body.get("flow_id")
    if not isinstance(flow_id, str) or not _FLOW_ID.match(flow_id):
        raise _invalid(
            [FieldError(("flow_id",), f"must match {FLOW_ID_PATTERN}", "pattern")], "flow_id"
        )
    unknown = set(body) - {"flow_id", "enabled", "definition"}
    if unknown:
        field = sorted(unknown)[0]
        raise _invalid([FieldError((field,), "unknown field", "unknown_field")], field)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid([FieldError(("enabled",), "must be true or false", "type")], "enabled")
    definition = _definition(body.get("definition"), settings)
    with flow_errors(settings):
        document = await registry.create(flow_id, definition, enabled)
    return view(document)


@router.get("")
async def list_flows(
    registry: FlowRegistryDep,
    settings: SettingsDep,
    enabled: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    with flow_errors(settings):
        page = await registry.list(enabled=enabled, limit=limit, offset=offset)
    return {
        "items": [view(document) for document in page.items],
        "total": page.total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{flow_id}")
async def get_flow(
    flow_id: str,
    registry: FlowRegistryDep,
    settings: SettingsDep,
    version: Annotated[int | None, Query(ge=1, description="an older version")] = None,
) -> dict[str, Any]:
    with flow_errors(settings):
        document = await registry.get(flow_id, version)
    if document is None:
        raise _not_found(flow_id, version)
    return view(document)


@router.put("/{flow_id}")
async def update_flow(
    flow_id: str, body: JsonObject, registry: FlowRegistryDep, settings: SettingsDep
) -> dict[str, Any]:
    """Replace the definition: ``{"definition": {...}}``; the flow gets its next version."""
    unknown = set(body) - {"definition"}
    if unknown:
        field = sorted(unknown)[0]
        raise _invalid([FieldError((field,), "unknown field", "unknown_field")], field)
    definition = _definition(body.get("definition"), settings)
    with flow_errors(settings):
        document = await registry.update(flow_id, definition)
    return view(document)


@router.patch("/{flow_id}")
async def enable_flow(
    flow_id: str, body: JsonObject, registry: FlowRegistryDep, settings: SettingsDep
) -> dict[str, Any]:
    """Enable or disable: ``{"enabled": false}`` (the version does not change)."""
    enabled = body.get("enabled")
    if set(body) != {"enabled"} or not isinstance(enabled, bool):
        raise _invalid([FieldError(("enabled",), 'send {"enabled": true|false}', "type")])
    with flow_errors(settings):
        document = await registry.set_enabled(flow_id, enabled)
    return view(document)


@router.delete("/{flow_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_flow(flow_id: str, registry: FlowRegistryDep, settings: SettingsDep) -> Response:
    with flow_errors(settings):
        await registry.delete(flow_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{flow_id}/dry-run")
async def dry_run(
    flow_id: str,
    body: JsonObject,
    request: Request,
    registry: FlowRegistryDep,
    settings: SettingsDep,
    runner: DryRunnerDep,
) -> dict[str, Any]:
    """Run the flow (its current version, or ``"version": N``) on ``"reading"`` (a reading as
    a device sends it) and return the trace node by node. Nothing is called, published or
    stored; outbound calls are listed as ``planned``. The evaluation runs in a process of its
    own (:mod:`api.dry_runs`): it answers within ``FLEET_API__DRY_RUN_TIMEOUT_S`` or is
    stopped (422), and beyond ``FLEET_API__DRY_RUNS_AT_ONCE`` at once the answer is 503."""
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or version < 1):
        raise _invalid([FieldError(("version",), "a version number (>= 1)", "type")], "version")
    reading = _reading(body.get("reading"), settings)
    with flow_errors(settings):
        document = await registry.get(flow_id, version)
    if document is None:
        raise _not_found(flow_id, version)
    asked = DryRun(document=document, sample=_sample(request, reading), now=datetime.now(UTC))
    try:
        reply = await runner.run(asked)
    except DryRunTimeout as exc:
        detail = f"the flow took longer than {runner.timeout_s:g} s on this reading; it was stopped"
        error = {"field": "reading", "message": detail, "type": "timeout"}
        raise ProblemError(422, "Dry run took too long", detail, errors=[error]) from exc
    except DryRunsBusy as exc:
        detail = f"{exc} (at most {runner.at_once} at once); retry in a moment"
        retry = {"Retry-After": str(settings.api.retry_after_s)}
        raise ProblemError(503, "Service unavailable", detail, headers=retry) from exc
    except EvaluatorFailed as exc:
        raise ProblemError(500, "Dry run failed", str(exc)) from exc
    if reply.errors:
        raise _invalid([error.with_prefix("definition") for error in reply.errors])
    if reply.answer is None:
        raise ProblemError(500, "Dry run failed", reply.failure or "no answer")
    return reply.answer


def view(document: FlowDocument) -> dict[str, Any]:
    shown: dict[str, Any] = msgspec.to_builtins(document)
    shown.pop("schema_version", None)
    shown["alert_rule"] = document.definition.alert is not None
    return shown


def _definition(value: Any, settings: Settings) -> FlowDefinition:
    if not isinstance(value, dict):
        message = "a flow definition object (name, match, nodes)"
        raise _invalid([FieldError(("definition",), message, "type")], "definition")
    try:
        definition = decode_definition(value)
    except ValidationFailure as exc:
        raise _invalid([error.with_prefix("definition") for error in exc.errors]) from exc
    errors = list(_egress_errors(definition, settings))
    if errors:
        raise _invalid(errors)
    return definition


def _egress_errors(definition: FlowDefinition, settings: Settings) -> Iterator[FieldError]:
    """Targets refused before the flow is stored: Kafka topics the egress rule forbids, HTTP
    URLs whose literal host is refused (a name is checked where it resolves, at call time)."""
    policy = EgressPolicy.from_settings(settings)
    for index, node in enumerate(definition.nodes):
        if isinstance(node, KafkaNode):
            why, field = kafka_target_refusal(node.topic, settings), "topic"
        elif isinstance(node, HttpNode):
            why, field = literal_url_refusal(node.url, policy), "url"
        else:
            continue
        if why is not None:
            loc = ("definition", "nodes", index, field)
            yield FieldError(loc, f"node {node.id!r}: {why}", "egress")


def _reading(value: Any, settings: Settings) -> Any:
    if not isinstance(value, dict):
        message = "a reading as a device sends it"
        raise _invalid([FieldError(("reading",), message, "type")], "reading")
    try:
        return decode_reading(
            msgspec.json.encode(value), now=datetime.now(UTC), limits=settings.generic.limits()
        )
    except ValidationFailure as exc:
        raise _invalid([error.with_prefix("reading") for error in exc.errors]) from exc


def _sample(request: Request, reading: Any) -> Sample:
    """The reading enriched as the worker would, from this process's device cache."""
    cache = getattr(request.app.state, "device_cache", None)
    device = None if cache is None else cache.get(reading.device_id)
    return sample_of(reading, device, datetime.now(UTC))


@contextmanager
def flow_errors(settings: Settings) -> Iterator[None]:
    with registry_errors(settings, "flow_id", _not_found):
        try:
            yield
        except ValidationFailure as exc:
            raise _invalid([error.with_prefix("definition") for error in exc.errors]) from exc


def _invalid(errors: list[FieldError], field: str | None = None) -> ProblemError:
    described = []
    for error in errors:
        entry: dict[str, Any] = {
            "field": ".".join(str(part) for part in error.loc) or field,
            "message": error.message,
            "type": error.type,
        }
        node = _node_of(error)
        if node is not None:
            entry["node"] = node
        described.append(entry)
    return ProblemError(422, "Invalid flow", errors[0].describe(), errors=described)


def _node_of(error: FieldError) -> str | None:
    match = re.match(r"^node '([^']*)'", error.message)
    return match.group(1) if match else None


def _not_found(flow_id: str, version: int | None = None) -> ProblemError:
    which = f"flow {one_line(flow_id)}"
    if version is not None:
        which = f"version {version} of {which}"
    return not_found(f"{which} does not exist", "flow_id", "no such flow")

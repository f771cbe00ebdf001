"""Flows kept as files (the way teams keep them in git), and the plan that brings the registry
to what a folder says.

A flow file is a JSON or YAML flow definition (``name``, ``match``, ``nodes``) named after the
flow: ``gas-above-500.yaml`` is flow ``gas-above-500``. An optional top-level ``enabled: false``
keeps the flow stored but not running. :func:`plan` compares the files with the registry and
says, per flow, what applying them does: ``create``, ``update`` (a new version), ``enable``,
``disable``, ``unchanged``, and for flows not in the folder, with ``prune``, ``disable`` or
``delete``. Applying the same folder twice changes nothing the second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import yaml

from schemas.errors import FieldError, ValidationFailure
from schemas.flows import FLOW_ID_PATTERN, FlowDefinition, FlowDocument, decode_definition

SUFFIXES = (".yaml", ".yml", ".json")
_FLOW_ID = re.compile(FLOW_ID_PATTERN)

Action = Literal["create", "update", "enable", "disable", "delete", "unchanged"]
Prune = Literal["disable", "delete"]


class FlowFileError(Exception):
    """A file that is not a flow definition: the message names the file and the field."""


@dataclass(frozen=True)
class FlowFile:
    path: Path
    flow_id: str
    definition: FlowDefinition
    enabled: bool


@dataclass(frozen=True)
class Change:
    flow_id: str
    action: Action
    definition: FlowDefinition | None = None
    """What ``create`` and ``update`` store."""
    enabled: bool | None = None
    """What the flow ends as (create, update: from the file)."""
    detail: str = ""

    def describe(self) -> str:
        return f"{self.action:9} {self.flow_id}" + (f"  ({self.detail})" if self.detail else "")


def flow_paths(targets: Iterable[Path]) -> list[Path]:
    """The flow files of ``targets``: files as given, folders' ``*.yaml|yml|json`` (sorted)."""
    found: list[Path] = []
    for target in targets:
        if target.is_dir():
            found += sorted(p for p in target.iterdir() if p.suffix in SUFFIXES and p.is_file())
        else:
            found.append(target)
    return found


def load_flow_file(path: Path) -> FlowFile:
    """The flow of ``path``; raises :class:`FlowFileError` naming the file and the field."""
    flow_id = path.stem
    if not _FLOW_ID.match(flow_id):
        raise FlowFileError(f"{path}: the file name must be a flow id ({FLOW_ID_PATTERN})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FlowFileError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FlowFileError(f"{path}: a flow definition is an object (name, match, nodes)")
    enabled = data.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise FlowFileError(f"{path}: enabled: expected true or false")
    try:
        definition = decode_definition(data)
    except ValidationFailure as exc:
        raise FlowFileError(f"{path}: {describe(exc.errors)}") from exc
    return FlowFile(path, flow_id, definition, enabled)


def describe(errors: Iterable[FieldError]) -> str:
    return "; ".join(error.describe() for error in errors)


def by_id(files: Iterable[FlowFile]) -> dict[str, FlowFile]:
    """The files keyed by flow id; two files of one flow (``a.yaml``, ``a.json``) are refused."""
    found: dict[str, FlowFile] = {}
    for flow in files:
        if flow.flow_id in found:
            raise FlowFileError(
                f"{flow.path} and {found[flow.flow_id].path} are both {flow.flow_id}"
            )
        found[flow.flow_id] = flow
    return found


def plan(
    wanted: Mapping[str, FlowFile],
    stored: Mapping[str, FlowDocument],
    prune: Prune | None = None,
) -> list[Change]:
    """What applying ``wanted`` to a registry holding ``stored`` does, flow by flow (by id)."""
    changes = [_change(flow, stored.get(flow_id)) for flow_id, flow in sorted(wanted.items())]
    for flow_id, document in sorted(stored.items()):
        if flow_id in wanted:
            continue
        if prune == "delete":
            changes.append(Change(flow_id, "delete", detail="not in the files"))
        elif prune == "disable" and document.enabled:
            changes.append(Change(flow_id, "disable", enabled=False, detail="not in the files"))
    return changes


def _change(flow: FlowFile, document: FlowDocument | None) -> Change:
    source = str(flow.path)
    if document is None:
        state = "" if flow.enabled else ", disabled"
        return Change(flow.flow_id, "create", flow.definition, flow.enabled, source + state)
    if _same(document.definition, flow.definition):
        if document.enabled == flow.enabled:
            return Change(flow.flow_id, "unchanged", detail=f"v{document.version}")
        action: Action = "enable" if flow.enabled else "disable"
        return Change(flow.flow_id, action, enabled=flow.enabled, detail=source)
    detail = f"v{document.version} -> v{document.version + 1}, {source}"
    if document.enabled != flow.enabled:
        detail += ", " + ("enabled" if flow.enabled else "disabled")
    return Change(flow.flow_id, "update", flow.definition, flow.enabled, detail)


def _same(stored: FlowDefinition, wanted: FlowDefinition) -> bool:
    return bool(msgspec.to_builtins(stored) == msgspec.to_builtins(wanted))

"""Flow files and the plan ``fleetstream flows apply`` prints and carries out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cli.flow_files import FlowFile, FlowFileError, by_id, flow_paths, load_flow_file, plan
from schemas.flows import FlowDocument, decode_definition
from streams.flow_engine.examples import GAS_ABOVE_500, PRESENCE_AFTER_HOURS
from tests import clock

GAS = decode_definition(GAS_ABOVE_500)
PRESENCE = decode_definition(PRESENCE_AFTER_HOURS)


def _stored(
    flow_id: str, definition: object, enabled: bool = True, version: int = 1
) -> FlowDocument:
    now = clock.now()
    return FlowDocument(
        flow_id=flow_id,
        version=version,
        enabled=enabled,
        definition=definition,  # type: ignore[arg-type]
        created_at=now,
        updated_at=now,
    )


def _file(flow_id: str, definition: object, enabled: bool = True) -> FlowFile:
    return FlowFile(Path(f"{flow_id}.yaml"), flow_id, definition, enabled)  # type: ignore[arg-type]


def test_plan_says_what_differs_flow_by_flow() -> None:
    wanted = {
        "new": _file("new", GAS),
        "same": _file("same", GAS),
        "changed": _file("changed", PRESENCE),
        "off": _file("off", GAS, enabled=False),
        "on": _file("on", GAS),
    }
    stored = {
        "same": _stored("same", GAS),
        "changed": _stored("changed", GAS, version=3),
        "off": _stored("off", GAS),
        "on": _stored("on", GAS, enabled=False),
        "gone": _stored("gone", GAS),
        "gone-off": _stored("gone-off", GAS, enabled=False),
    }
    actions = {c.flow_id: c.action for c in plan(wanted, stored)}
    assert actions == {
        "new": "create",
        "same": "unchanged",
        "changed": "update",
        "off": "disable",
        "on": "enable",
    }
    [update] = [c for c in plan(wanted, stored) if c.action == "update"]
    assert update.definition == PRESENCE and "v3 -> v4" in update.detail

    pruned = {c.flow_id: c.action for c in plan(wanted, stored, "disable")}
    assert pruned["gone"] == "disable" and "gone-off" not in pruned  # already disabled
    deleted = {c.flow_id: c.action for c in plan(wanted, stored, "delete")}
    assert deleted["gone"] == deleted["gone-off"] == "delete"


def test_a_plan_applied_is_unchanged_the_second_time() -> None:
    wanted = {"a": _file("a", GAS), "b": _file("b", PRESENCE, enabled=False)}
    stored = {"a": _stored("a", GAS), "b": _stored("b", PRESENCE, enabled=False)}
    assert {c.action for c in plan(wanted, stored, "delete")} == {"unchanged"}


def test_flow_files_are_named_after_their_flow_and_checked(tmp_path: Path) -> None:
    (tmp_path / "gas-high.yaml").write_text(yaml.safe_dump({**GAS_ABOVE_500, "enabled": False}))
    (tmp_path / "presence.json").write_text(json.dumps(PRESENCE_AFTER_HOURS))
    (tmp_path / "notes.txt").write_text("not a flow")
    paths = flow_paths([tmp_path])
    assert [p.name for p in paths] == ["gas-high.yaml", "presence.json"]
    flows = by_id(load_flow_file(p) for p in paths)
    assert flows["gas-high"].enabled is False and flows["gas-high"].definition == GAS
    assert flows["presence"].enabled is True

    (tmp_path / "gas-high.json").write_text(json.dumps(GAS_ABOVE_500))
    with pytest.raises(FlowFileError, match="are both gas-high"):
        by_id(load_flow_file(p) for p in flow_paths([tmp_path]))

    bad_name = tmp_path / "Bad Name.yaml"
    bad_name.write_text(yaml.safe_dump(GAS_ABOVE_500))
    with pytest.raises(FlowFileError, match="file name must be a flow id"):
        load_flow_file(bad_name)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({**GAS_ABOVE_500, "nodes": [{"id": "x", "type": "nope"}]}))
    with pytest.raises(FlowFileError, match=r"wrong\.yaml: nodes"):
        load_flow_file(wrong)
    flag = tmp_path / "flag.yaml"
    flag.write_text(yaml.safe_dump({**GAS_ABOVE_500, "enabled": "yes please"}))
    with pytest.raises(FlowFileError, match="enabled: expected true or false"):
        load_flow_file(flag)


def test_now_is_not_read_by_a_plan() -> None:
    stamp = datetime(2020, 1, 1, tzinfo=UTC)
    document = FlowDocument(
        flow_id="a", version=1, enabled=True, definition=GAS, created_at=stamp, updated_at=stamp
    )
    assert plan({"a": _file("a", GAS)}, {"a": document})[0].action == "unchanged"

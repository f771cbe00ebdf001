"""``fleetstream flows apply|validate|dry-run`` on the real Postgres and Kafka.

``apply --prune`` acts on every stored flow, so this module gives its test a database of its
own: flows other tests store in the shared test database are none of its business.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.settings import Settings
from streams.flow_engine.examples import GAS_ABOVE_500, PRESENCE_AFTER_HOURS
from tests.factories import reading
from tests.integration.cli_tools import fleetstream, json_out, own_database_of


@pytest.fixture
def own_database(pipeline: Settings) -> Iterator[Settings]:
    with own_database_of(pipeline) as settings:
        yield settings


def _gas(threshold: float) -> dict[str, Any]:
    node = {
        **GAS_ABOVE_500["nodes"][0],
        "condition": f"sensors.mq134.gas_concentration > {threshold}",
    }
    return {**GAS_ABOVE_500, "nodes": [node]}


def _stored(settings: Settings) -> dict[str, tuple[int, bool]]:
    flows = json_out(fleetstream(settings, "flows", "list", "--json"))
    return {flow["flow_id"]: (flow["version"], flow["enabled"]) for flow in flows}


def _plan(result: Any) -> dict[str, str]:
    return {change["flow_id"]: change["action"] for change in json.loads(result.stdout)}


def test_apply_creates_updates_disables_and_prunes_what_the_folder_says(
    own_database: Settings, tmp_path: Path
) -> None:
    settings, folder = own_database, tmp_path / "flows"
    folder.mkdir()
    (folder / "gas-high.yaml").write_text(yaml.safe_dump(_gas(500.0)))
    (folder / "presence.json").write_text(json.dumps(PRESENCE_AFTER_HOURS))

    created = fleetstream(settings, "flows", "apply", str(folder), "--yes", "--json")
    assert _plan(created) == {"gas-high": "create", "presence": "create"}
    assert _stored(settings) == {"gas-high": (1, True), "presence": (1, True)}

    again = fleetstream(settings, "flows", "apply", str(folder))  # nothing to do: nothing asked
    assert again.stdout.splitlines()[0] == "plan: 2 unchanged"
    assert _stored(settings) == {"gas-high": (1, True), "presence": (1, True)}

    (folder / "gas-high.yaml").write_text(yaml.safe_dump(_gas(600.0)))
    (folder / "presence.json").write_text(json.dumps({**PRESENCE_AFTER_HOURS, "enabled": False}))
    declined = fleetstream(settings, "flows", "apply", str(folder), code=1)  # no answer: no
    assert "update    gas-high  (v1 -> v2" in declined.stdout
    assert _stored(settings) == {"gas-high": (1, True), "presence": (1, True)}
    changed = fleetstream(settings, "flows", "apply", str(folder), "--yes", "--json")
    assert _plan(changed) == {"gas-high": "update", "presence": "disable"}
    assert _stored(settings) == {"gas-high": (2, True), "presence": (1, False)}

    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(_gas(900.0)))
    fleetstream(settings, "flows", "create", "extra", str(extra))
    pruned = fleetstream(settings, "flows", "apply", str(folder), "--prune", "--yes", "--json")
    assert _plan(pruned) == {"gas-high": "unchanged", "presence": "unchanged", "extra": "disable"}
    assert _stored(settings)["extra"] == (1, False)

    fleetstream(settings, "flows", "apply", str(folder), "--prune", "--delete", code=1)
    assert "extra" in _stored(settings)
    fleetstream(settings, "flows", "apply", str(folder), "--prune", "--delete", "--yes")
    assert _stored(settings) == {"gas-high": (2, True), "presence": (1, False)}


def test_validate_names_the_file_node_and_field(pipeline: Settings, tmp_path: Path) -> None:
    good = tmp_path / "gas-high.yaml"
    good.write_text(yaml.safe_dump(_gas(500.0)))
    ok = fleetstream(pipeline, "flows", "validate", str(good))
    assert ok.stdout.strip() == f"ok {good} (gas-high, 1 nodes)"

    broken = tmp_path / "broken.yaml"
    node = {**GAS_ABOVE_500["nodes"][0], "condition": "sensors.mq134.gas_concentration >"}
    broken.write_text(yaml.safe_dump({**GAS_ABOVE_500, "nodes": [node]}))
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**GAS_ABOVE_500, "nodez": []}))
    refused = fleetstream(pipeline, "flows", "validate", str(tmp_path), code=2)
    assert f"ok {good}" in refused.stdout
    errors = refused.stderr
    assert f"invalid {broken}" in errors and "high_gas" in errors and "condition" in errors
    assert f"invalid {typo}" in errors and "nodez" in errors


def test_dry_run_of_a_file_and_of_a_stored_flow(own_database: Settings, tmp_path: Path) -> None:
    settings = own_database
    flow = tmp_path / "gas-high.yaml"
    flow.write_text(yaml.safe_dump(_gas(600.0)))
    sample = tmp_path / "reading.json"
    high = reading("cli-dry-001", 0, {"mq134": {"gas_concentration": 650.0}})
    sample.write_text(json.dumps(high))

    answer = json_out(fleetstream(settings, "flows", "dry-run", str(flow), str(sample)))
    assert [(step["node"], step["outcome"]) for step in answer["trace"]] == [
        ("high_gas", "evaluated")
    ]
    assert answer["alert"]["fires_from_idle"] is True and answer["alert"]["value"] == 650

    fleetstream(settings, "flows", "create", "gas-high", str(flow))
    low = tmp_path / "low.json"
    low.write_text(json.dumps(reading("cli-dry-001", 0, {"mq134": {"gas_concentration": 550.0}})))
    stored = json_out(fleetstream(settings, "flows", "dry-run", "gas-high", str(low)))
    assert stored["alert"]["fires_from_idle"] is False

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(reading("cli-dry-001", 0, {"mq134": {"gas_concentration": -1}})))
    refused = fleetstream(settings, "flows", "dry-run", "gas-high", str(bad), code=2)
    assert "sensors.mq134" in refused.stderr
    missing = fleetstream(settings, "flows", "dry-run", "no-such-flow", str(low), code=1)
    assert "flow no-such-flow does not exist" in missing.stderr

"""``fleetstream flows``: definition files (JSON or YAML) and what their errors say."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cli.flows_commands import load_definition

YAML = """
name: Gas above 500 ppm
match: {sensors: [mq134]}
nodes:
  - id: high_gas
    type: alert
    condition: "sensors.mq134.gas_concentration > 500.0"
    for_s: 30
"""


def test_yaml_and_json_files_give_the_same_definition(tmp_path: Path) -> None:
    yaml_file = tmp_path / "gas.yaml"
    yaml_file.write_text(YAML)
    json_file = tmp_path / "gas.json"
    json_file.write_text(
        '{"name": "Gas above 500 ppm", "match": {"sensors": ["mq134"]}, "nodes": [{"id": '
        '"high_gas", "type": "alert", "condition": "sensors.mq134.gas_concentration > 500.0",'
        ' "for_s": 30}]}'
    )
    from_yaml = load_definition(yaml_file)
    assert from_yaml == load_definition(json_file)
    assert from_yaml.alert is not None and from_yaml.alert.for_s == 30


def test_errors_name_the_file_the_node_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(YAML.replace("for_s: 30", "for_s: -1"))
    with pytest.raises(typer.BadParameter) as caught:
        load_definition(bad)
    message = str(caught.value)
    assert "bad.yaml" in message and "nodes[0].for_s" in message and "high_gas" in message
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(typer.BadParameter, match="object"):
        load_definition(tmp_path / "list.yaml")

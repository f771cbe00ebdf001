"""What ``fleetstream devices`` and ``fleetstream flows`` share, and which way the CLI imports."""

from __future__ import annotations

import ast
from pathlib import Path

from cli.registries import DEVICES, FLOWS, document_view
from connectors.registry import ResyncReport
from schemas.devices import Device
from tests import clock

CLI = Path(__file__).parents[3] / "cli"


def test_the_resync_line_names_the_registry() -> None:
    report = ResyncReport(published=2, unchanged=5, tombstoned=1)
    assert DEVICES.describe(report) == ("device registry: 2 published, 5 unchanged, 1 tombstoned")
    assert FLOWS.describe(report).startswith("flow registry: 2 published")


def test_a_shown_document_has_no_schema_version_and_hides_what_it_is_told() -> None:
    now = clock.now()
    device = Device(device_id="esp-1", token_hash="0" * 64, created_at=now, updated_at=now)
    view = document_view(device, "token_hash")
    assert view["device_id"] == "esp-1"
    assert "schema_version" not in view and "token_hash" not in view


def test_shared_cli_modules_import_no_command_module() -> None:
    """runner → registries → console, never back: the commands import these, not runner."""
    for name in ("runner", "registries", "console", "devices_commands", "flows_commands"):
        tree = ast.parse((CLI / f"{name}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        commands = {module for module in imported if module.endswith("_commands")}
        assert not commands, (name, commands)
        if name != "runner":
            assert "cli.runner" not in imported, name

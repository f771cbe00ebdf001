"""``fleetstream flows``: the flow registry from the command line.

Talks to Postgres and ``fleet.flows.v1`` directly (no API needed), through the same
:class:`~connectors.registry.FlowRegistry` as the admin API, so workers pick a change up
the same way (:mod:`cli.registries`, shared with ``fleetstream devices``). Definitions are JSON
or YAML files; errors name the node and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
import yaml

from cli.console import fail
from cli.registries import FLOWS, describe_errors, document_view, print_json
from connectors.postgres.flows import FlowExists
from connectors.registry import FlowRegistry
from schemas.errors import ValidationFailure
from schemas.flows import FlowDefinition, FlowDocument, decode_definition
from streams.flow_engine.examples import examples

flows_app = typer.Typer(no_args_is_help=True, help="Flows and alert rules.")

FlowIdArg = Annotated[str, typer.Argument(help="the flow's id, e.g. gas-above-500")]
FileArg = Annotated[Path, typer.Argument(help="a JSON or YAML flow definition", exists=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


@flows_app.command("create")
def create(
    flow_id: FlowIdArg,
    path: FileArg,
    disabled: Annotated[bool, typer.Option("--disabled", help="store it disabled")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a flow from a definition file."""
    definition = load_definition(path)
    _show(FLOWS.run(lambda registry: registry.create(flow_id, definition, not disabled)), as_json)


@flows_app.command("update")
def update(flow_id: FlowIdArg, path: FileArg, as_json: JsonOpt = False) -> None:
    """Store a new version of the flow; workers swap to it without a restart."""
    definition = load_definition(path)
    _show(FLOWS.run(lambda registry: registry.update(flow_id, definition)), as_json)


@flows_app.command("list")
def list_flows(
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List flows ordered by id."""
    page = FLOWS.run(lambda registry: registry.list(enabled=enabled, limit=1000))
    if as_json:
        print_json([document_view(flow) for flow in page.items])
        return
    for flow in page.items:
        kind = "alert" if flow.definition.alert is not None else "flow"
        state = "enabled" if flow.enabled else "disabled"
        typer.echo(
            f"{flow.flow_id:32} v{flow.version:<4} {state:8} {kind:5} {flow.definition.name}"
        )
    typer.echo(f"{len(page.items)} of {page.total} flows")


@flows_app.command("show")
def show(
    flow_id: FlowIdArg,
    version: Annotated[int | None, typer.Option(help="an older version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a flow (its current version unless --version)."""
    flow = FLOWS.run(lambda registry: registry.get(flow_id, version))
    if flow is None:
        fail(f"flow {flow_id} does not exist")
    _show(flow, as_json)


@flows_app.command("enable")
def enable(flow_id: FlowIdArg, as_json: JsonOpt = False) -> None:
    """Run the flow again."""
    _show(FLOWS.run(lambda registry: registry.set_enabled(flow_id, True)), as_json)


@flows_app.command("disable")
def disable(flow_id: FlowIdArg, as_json: JsonOpt = False) -> None:
    """Stop running the flow (workers drop it from their next batch)."""
    _show(FLOWS.run(lambda registry: registry.set_enabled(flow_id, False)), as_json)


@flows_app.command("delete")
def delete(
    flow_id: FlowIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete the flow and its versions (a tombstone on fleet.flows.v1)."""
    FLOWS.delete(flow_id, yes=yes)


@flows_app.command("load-examples")
def load_examples() -> None:
    """Create seed 002's alert rules (gas-above-500, presence-after-hours); existing ones are
    left as they are."""

    async def load(registry: FlowRegistry) -> list[str]:
        lines = []
        for flow_id, definition in examples().items():
            try:
                flow = await registry.create(flow_id, definition)
            except FlowExists:
                lines.append(f"{flow_id}: exists, left as it is")
            else:
                lines.append(f"{flow_id}: created (v{flow.version})")
        return lines

    for line in FLOWS.run(load):
        typer.echo(line)


@flows_app.command("resync")
def resync(as_json: JsonOpt = False) -> None:
    """Make fleet.flows.v1 match Postgres: publish what differs, tombstone what is gone."""
    FLOWS.print_resync(as_json)


def load_definition(path: Path) -> FlowDefinition:
    """A checked definition from a JSON or YAML file; exits 2 naming node and field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: a flow definition is an object (name, match, nodes)")
    try:
        return decode_definition(data)
    except ValidationFailure as exc:
        raise typer.BadParameter(f"{path}: {describe_errors(exc)}") from exc


def _show(flow: FlowDocument, as_json: bool) -> None:
    if as_json:
        print_json(document_view(flow))
        return
    typer.echo(f"{flow.flow_id} v{flow.version} ({'enabled' if flow.enabled else 'disabled'})")
    typer.echo(yaml.safe_dump(msgspec.to_builtins(flow.definition), sort_keys=False).rstrip())

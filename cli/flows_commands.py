"""``fleetstream flows``: the flow registry from the command line.

Talks to Postgres and ``fleet.flows.v1`` directly (no API needed), through the same
:class:`~connectors.registry.FlowRegistry` as the admin API, so workers pick a change up
the same way (:mod:`cli.registries`, shared with ``fleetstream devices``). Definitions are JSON
or YAML files; errors name the node and the field. ``apply`` brings the registry to a folder
of flow files (:mod:`cli.flow_files`); ``dry-run`` evaluates in the API's evaluator process
(:mod:`api.dry_runs`), with its time limit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
import yaml

from api.dry_runs import DryRunner, DryRunTimeout, EvaluatorFailed, sample_of
from cli.console import fail
from cli.flow_files import (
    Change,
    FlowFile,
    FlowFileError,
    by_id,
    describe,
    flow_paths,
    load_flow_file,
    plan,
)
from cli.registries import DEVICES, FLOWS, describe_errors, document_view, print_json
from connectors.postgres.flows import FlowExists
from connectors.registry import FlowRegistry
from schemas.errors import ValidationFailure
from schemas.flows import FlowDefinition, FlowDocument, decode_definition
from schemas.readings import Reading
from schemas.settings import Settings, get_settings
from schemas.validation import decode_reading
from streams.flow_engine.dry_run import DryRun, Reply
from streams.flow_engine.engine import check_definition
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


TargetsArg = Annotated[
    list[Path], typer.Argument(help="flow files, or folders of *.yaml|*.yml|*.json", exists=True)
]


@flows_app.command("apply")
def apply(
    targets: TargetsArg,
    prune: Annotated[
        bool, typer.Option("--prune", help="disable stored flows that no file names")
    ] = False,
    delete: Annotated[
        bool, typer.Option("--delete", help="with --prune: delete them instead of disabling")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make the registry hold the flows of the files: creates, updates, enables or disables
    what differs (the plan is printed first); each file is named after its flow id."""
    if delete and not prune:
        raise typer.BadParameter("--delete goes with --prune")
    wanted = _load_all(targets)

    async def run(registry: FlowRegistry) -> list[Change]:
        changes = plan(
            wanted, await _stored(registry), "delete" if delete else "disable" if prune else None
        )
        doing = [change for change in changes if change.action != "unchanged"]
        _print_plan(changes, as_json)
        if doing and not yes:  # the plan above is what it touches
            typer.confirm("apply this plan?", abort=True, err=True)
        for change in doing:
            await _apply(registry, change)
            if not as_json:
                typer.echo(f"done: {change.describe()}")
        return changes

    FLOWS.run(run)


@flows_app.command("validate")
def validate(targets: TargetsArg) -> None:
    """Check flow files as `flows apply` would (fields, expressions, templates); exit 2 naming
    the file, node and field of each that is wrong."""
    failed = 0
    for path in flow_paths(targets):
        try:
            flow = load_flow_file(path)
            check_definition(flow.flow_id, flow.definition)
        except FlowFileError as exc:
            failed += 1
            typer.secho(f"invalid {exc}", fg=typer.colors.RED, err=True)
        except ValidationFailure as exc:
            failed += 1
            typer.secho(f"invalid {path}: {describe(exc.errors)}", fg=typer.colors.RED, err=True)
        else:
            typer.echo(f"ok {path} ({flow.flow_id}, {len(flow.definition.nodes)} nodes)")
    if failed:
        raise typer.Exit(2)


@flows_app.command("dry-run")
def dry_run(
    flow: Annotated[str, typer.Argument(help="a flow file, or the id of a stored flow")],
    reading: Annotated[Path, typer.Argument(help="a reading as a device sends it (JSON)")],
    version: Annotated[
        int | None, typer.Option(min=1, help="a stored flow's older version")
    ] = None,
) -> None:
    """What FLOW would do with READING: match, trace node by node, the calls it would make
    (listed, never made), the alert decision. Nothing is called, published or stored."""
    settings = get_settings()
    sample_reading = _reading(reading, settings)
    document = _document(flow, version)
    device = DEVICES.run(lambda registry: registry.get(sample_reading.device_id))
    asked = DryRun(
        document=document,
        sample=sample_of(sample_reading, device, datetime.now(UTC)),
        now=datetime.now(UTC),
    )
    runner = DryRunner(timeout_s=settings.api.dry_run_timeout_s, at_once=1)

    async def evaluate() -> Reply:
        try:
            return await runner.run(asked)
        finally:
            await runner.close()

    try:
        reply = asyncio.run(evaluate())
    except DryRunTimeout:
        fail(f"the flow took longer than {runner.timeout_s:g} s on this reading; it was stopped", 2)
    except EvaluatorFailed as exc:
        fail(f"dry run failed: {exc}")
    if reply.errors:
        fail(f"invalid flow: {describe(reply.errors)}", 2)
    if reply.answer is None:
        fail(f"dry run failed: {reply.failure or 'no answer'}")
    print_json(reply.answer)


def _load_all(targets: list[Path]) -> dict[str, FlowFile]:
    try:
        return by_id(load_flow_file(path) for path in flow_paths(targets))
    except FlowFileError as exc:
        fail(f"invalid {exc}", 2)


async def _stored(registry: FlowRegistry) -> dict[str, FlowDocument]:
    stored: dict[str, FlowDocument] = {}
    while True:
        page = await registry.list(limit=1000, offset=len(stored))
        stored.update((flow.flow_id, flow) for flow in page.items)
        if not page.items or len(stored) >= page.total:
            return stored


async def _apply(registry: FlowRegistry, change: Change) -> None:
    if change.action == "create" and change.definition is not None:
        await registry.create(change.flow_id, change.definition, bool(change.enabled))
    elif change.action == "update" and change.definition is not None:
        updated = await registry.update(change.flow_id, change.definition)
        if updated.enabled != change.enabled:
            await registry.set_enabled(change.flow_id, bool(change.enabled))
    elif change.action in ("enable", "disable"):
        await registry.set_enabled(change.flow_id, change.action == "enable")
    elif change.action == "delete":
        await registry.delete(change.flow_id)


def _print_plan(changes: list[Change], as_json: bool) -> None:
    if as_json:
        print_json(
            [{"flow_id": c.flow_id, "action": c.action, "detail": c.detail} for c in changes]
        )
        return
    counts = Counter(change.action for change in changes)
    typer.echo("plan: " + (", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no flows"))
    for change in changes:
        typer.echo(f"  {change.describe()}")


def _reading(path: Path, settings: Settings) -> Reading:
    try:
        return decode_reading(
            path.read_bytes(), now=datetime.now(UTC), limits=settings.generic.limits()
        )
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    except ValidationFailure as exc:
        fail(f"invalid reading {path}: {describe(exc.errors)}", 2)


def _document(flow: str, version: int | None) -> FlowDocument:
    """The flow of a file (as version 0, enabled, never stored), or a stored one by id."""
    path = Path(flow)
    if path.is_file():
        if version is not None:
            raise typer.BadParameter("--version is for a stored flow, not a file")
        try:
            found = load_flow_file(path)
        except FlowFileError as exc:
            fail(f"invalid {exc}", 2)
        now = datetime.now(UTC)
        return FlowDocument(
            flow_id=found.flow_id,
            version=0,
            enabled=True,
            definition=found.definition,
            created_at=now,
            updated_at=now,
        )
    document = FLOWS.run(lambda registry: registry.get(flow, version))
    if document is None:
        fail(f"flow {flow}{f' v{version}' if version else ''} does not exist (nor a file {flow})")
    return document

"""``fleetstream devices``: the device registry from the command line.

Talks to Postgres and ``fleet.devices.v1`` directly (no API needed), through the same
:class:`~connectors.registry.DeviceRegistry` as the admin API, so a change made here reaches
every API instance the same way (:mod:`cli.registries`, shared with ``fleetstream flows``).
Output is a table, or JSON with ``--json``; a token is printed once, by ``create`` and
``rotate``, and is not stored anywhere in plain text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar

import msgspec
import typer

from api.device_models import IMPORT_MAX_DEVICES
from cli.console import fail, say
from cli.device_import import Row, Tally, TokenFile, chunks, file_format, import_chunk, read_rows
from cli.progress import activity
from cli.registries import DEVICES, document_view, print_json
from connectors.postgres.devices import DeviceQuery
from connectors.registry import DeviceRegistry, ImportNotPublished, ImportResult
from schemas.devices import Device, DeviceChanges, NewDevice
from schemas.errors import FleetError

T = TypeVar("T")

devices_app = typer.Typer(no_args_is_help=True, help="Registered devices and their tokens.")

DeviceIdArg = Annotated[str, typer.Argument(help="the device's id")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="use this token instead of a random one")
]


@devices_app.command("create")
def create(
    device_id: DeviceIdArg,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    profile: Annotated[str | None, typer.Option(help="device type, e.g. esp32")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="a tag; repeat for more")] = None,
    metadata: Annotated[str | None, typer.Option(help="a JSON object")] = None,
    inactivity_timeout: Annotated[
        int | None, typer.Option(help="seconds without data before the device is offline")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="register it disabled")] = False,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a device and print its token (once)."""
    new = _convert(
        {
            "device_id": device_id,
            "name": name,
            "profile": profile,
            "tags": tag or [],
            "metadata": _json_object(metadata),
            "inactivity_timeout_s": inactivity_timeout,
            "is_enabled": not disabled,
        },
        NewDevice,
    )
    device, plain = DEVICES.run(lambda registry: registry.create(new, token))
    _show(device, as_json, token=plain)


@devices_app.command("import")
def import_devices(
    file: Annotated[str, typer.Argument(help="CSV with a header row, or JSON lines; - for stdin")],
    tokens_out: Annotated[
        Path,
        typer.Option(
            "--tokens-out",
            help="write the created devices' tokens here (CSV device_id,token, mode 0600)",
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="overwrite --tokens-out")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="csv, jsonl, or auto (by suffix, else content)")
    ] = "auto",
    chunk_size: Annotated[
        int, typer.Option(min=1, max=IMPORT_MAX_DEVICES, help="devices per transaction")
    ] = IMPORT_MAX_DEVICES,
) -> None:
    """Register the devices of FILE in chunks (one insert and one publish each).

    Columns / keys: those of the admin API's create body (device_id, token_plain, name,
    profile, tags, metadata, inactivity_timeout_s, is_enabled, point_id, register_id), or,
    instead of token_plain, token_sha256: the hex SHA-256 of the device's token as another
    registry stored it (seed 004's token_hash), so the device keeps its token (no line in
    --tokens-out). In CSV, tags are separated by ';' and metadata is a JSON object. Devices
    already registered are left as they are (existing); a bad row is reported and skipped
    (failed, exit 1)."""
    if fmt not in ("auto", "csv", "jsonl"):
        raise typer.BadParameter("--format must be csv, jsonl or auto")
    try:
        tokens = TokenFile(tokens_out, force=force)
    except FileExistsError:
        fail(f"{tokens_out} exists; pass --force to overwrite it")
    try:
        with _input(file) as stream:
            first = stream.readline()
            kind = file_format(file, first) if fmt == "auto" else fmt
            rows = read_rows(itertools.chain([first], stream), kind)
            tally = _run_import(rows, tokens, chunk_size)
    finally:
        tokens.close()
    _summary(tally)


@devices_app.command("list")
def list_devices(
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="only enabled / disabled ones")
    ] = None,
    profile: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    search: Annotated[str | None, typer.Option(help="device_id or name prefix")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List devices ordered by id."""
    query = DeviceQuery(limit, offset, enabled, profile, tag, search)
    page = DEVICES.run(lambda registry: registry.list(query))
    if as_json:
        items = [_view(device) for device in page.items]
        print_json({"items": items, "total": page.total})
        return
    rows = [_row(device) for device in page.items]
    _table(["DEVICE_ID", "ENABLED", "PROFILE", "TAGS", "NAME", "UPDATED"], rows)
    typer.echo(f"{len(rows)} of {page.total} devices")


@devices_app.command("show")
def show(device_id: DeviceIdArg, as_json: JsonOpt = False) -> None:
    """Show one device."""
    device = DEVICES.run(lambda registry: registry.get(device_id))
    if device is None:
        fail(f"device {device_id} is not registered")
    _show(device, as_json)


@devices_app.command("disable")
def disable(device_id: DeviceIdArg, as_json: JsonOpt = False) -> None:
    """Refuse the device's requests on every API instance (within seconds)."""
    changes = DeviceChanges(is_enabled=False)
    _show(DEVICES.run(lambda registry: registry.update(device_id, changes)), as_json)


@devices_app.command("enable")
def enable(device_id: DeviceIdArg, as_json: JsonOpt = False) -> None:
    """Accept the device's requests again."""
    changes = DeviceChanges(is_enabled=True)
    _show(DEVICES.run(lambda registry: registry.update(device_id, changes)), as_json)


@devices_app.command("rotate")
def rotate(device_id: DeviceIdArg, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Give the device a new token (printed once); the old one stops working."""
    device, plain = DEVICES.run(lambda registry: registry.rotate_token(device_id, token))
    _show(device, as_json, token=plain)


@devices_app.command("delete")
def delete(
    device_id: DeviceIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete the device (a tombstone on the registry topic)."""
    DEVICES.delete(device_id, yes=yes)


@devices_app.command("resync")
def resync(as_json: JsonOpt = False) -> None:
    """Make fleet.devices.v1 match Postgres: publish what differs, tombstone what is gone."""
    DEVICES.print_resync(as_json)


@contextmanager
def _input(file: str) -> Iterator[TextIO]:
    if file == "-":
        yield sys.stdin
        return
    try:
        stream = open(file, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    with stream:
        yield stream


def _run_import(rows: Iterable[Row], tokens: TokenFile, chunk_size: int) -> Tally:
    tally = Tally()
    with activity("importing devices", unit="rows") as shown:

        def show() -> None:
            shown.count_to(tally.rows)
            shown.describe(_counts(tally))

        async def run(registry: DeviceRegistry) -> None:
            # The next chunk is read and checked in a thread while this one is registered:
            # Postgres and the broker work meanwhile, so the two overlap.
            batches = chunks(rows, chunk_size, tally)
            ahead = asyncio.create_task(asyncio.to_thread(next, batches, None))
            try:
                while (items := await ahead) is not None:
                    ahead = asyncio.create_task(asyncio.to_thread(next, batches, None))
                    result = await import_chunk(registry, items, tally)
                    _record(tally, tokens, result)
                    show()
            except ImportNotPublished as exc:
                _record(tally, tokens, exc.result)
                tally.stopped = str(exc)
            except FleetError as exc:
                tally.stopped = str(exc)
            finally:
                await asyncio.gather(
                    ahead, return_exceptions=True
                )  # its thread cannot be cancelled
            show()

        DEVICES.run(run)
        tally.elapsed_s = shown.elapsed_s
    return tally


def _record(tally: Tally, tokens: TokenFile, result: ImportResult) -> None:
    tokens.write(result.created)
    tally.created += len(result.created)
    tally.existing += len(result.existing)


def _counts(tally: Tally) -> str:
    return f"created {tally.created}, existing {tally.existing}, failed {len(tally.failures)}"


def _summary(tally: Tally) -> None:
    shown = 50
    for failure in tally.failures[:shown]:
        typer.secho(f"  {failure}", fg=typer.colors.YELLOW, err=True)
    if len(tally.failures) > shown:
        typer.secho(f"  ... and {len(tally.failures) - shown} more", err=True)
    rate = tally.rows / tally.elapsed_s if tally.elapsed_s else 0.0
    say(f"{_counts(tally)} in {tally.elapsed_s:.1f} s ({rate:,.0f} rows/s)")
    if tally.stopped is not None:
        fail(f"stopped: {tally.stopped}; run the same import again to go on")
    if tally.failures:
        raise typer.Exit(1)


def _convert(fields: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _json_object(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--metadata is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--metadata must be a JSON object")
    return value


def _view(device: Device) -> dict[str, Any]:
    """The device as the admin API shows it: no token hash."""
    return document_view(device, "token_hash")


def _show(device: Device, as_json: bool, *, token: str | None = None) -> None:
    view = _view(device)
    if token is not None:
        view["token"] = token
    if as_json:
        print_json(view)
        return
    for key, value in view.items():
        if key != "token":
            typer.echo(f"{key:22} {_cell(value)}")
    if token is not None:
        typer.secho(f"{'token':22} {token}", bold=True)
        typer.echo("(shown once: store it now; only its SHA-256 is kept)")


def _row(device: Device) -> list[str]:
    return [
        device.device_id,
        "yes" if device.is_enabled else "no",
        device.profile or "",
        ",".join(device.tags),
        device.name or "",
        device.updated_at.isoformat(timespec="seconds"),
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    for line in [headers, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))

"""``fleetstream devices import FILE``: rows of a CSV or JSON lines file, streamed in chunks
into :meth:`connectors.registry.DeviceRegistry.create_many` (the import route's registry call).

Each row is checked with the admin API's own rules (:class:`api.device_models.DeviceCreate`);
a bad row is reported with its line number, counted as failed and skipped, and the others go
on. A chunk is held in memory at a time, never the file. The created devices' tokens are
appended to the ``--tokens-out`` file (CSV ``device_id,token``, mode 0600) and synced to disk
after each chunk, before the next one is sent, so a run stopped midway loses no token; running
the same import again lists what the first run stored as existing.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import pydantic

from api.device_import import ImportItem, field_error, new_device, token_field, token_key
from api.device_models import DeviceImportItem
from connectors.postgres.devices import TokenInUse
from connectors.registry import DeviceRegistry, ImportResult
from schemas.errors import FleetError

CSV_LIST_SEPARATOR = ";"
"""Tags in one CSV cell: ``roof;north``."""
JSON_CSV_COLUMNS = ("metadata",)
"""CSV cells that hold JSON (an object)."""


@dataclass(frozen=True)
class Row:
    """One device of the file: its line number and its fields, or why it could not be read."""

    line: int
    fields: dict[str, Any] | None
    error: str | None = None


@dataclass
class Tally:
    created: int = 0
    existing: int = 0
    failures: list[str] = field(default_factory=list)
    stopped: str | None = None
    """Why the import stopped before the end of the file (a service away), if it did."""
    elapsed_s: float = 0.0

    @property
    def rows(self) -> int:
        return self.created + self.existing + len(self.failures)


def file_format(path: str, first_line: str) -> str:
    """``csv`` or ``jsonl``: by the file's suffix, else by its first line (an object: JSON)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if first_line.lstrip().startswith("{") else "csv"


class UnreadableFile(FleetError):
    """The file stopped being text (or CSV) midway: the import stops there."""


def read_rows(lines: Iterable[str], fmt: str) -> Iterator[Row]:
    """The rows of ``lines`` (a text stream), lazily."""
    rows = _csv_rows(lines) if fmt == "csv" else _jsonl_rows(lines)
    try:
        yield from rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UnreadableFile(f"cannot read the file: {exc}") from exc


def _jsonl_rows(lines: Iterable[str]) -> Iterator[Row]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, None, f"not JSON: {exc.msg}")
            continue
        if isinstance(value, dict):
            yield Row(number, value)
        else:
            yield Row(number, None, "not a JSON object")


def _csv_rows(lines: Iterable[str]) -> Iterator[Row]:
    reader = csv.DictReader(lines)
    for record in reader:
        try:
            yield Row(reader.line_num, _csv_fields(record))
        except ValueError as exc:
            yield Row(reader.line_num, None, str(exc))


def _csv_fields(record: dict[str | Any, str | Any]) -> dict[str, Any]:
    """A CSV record as a device body: empty cells left out, tags split, JSON cells parsed.
    Other cells stay text (the body's rules turn ``300``/``true`` into numbers/booleans)."""
    if None in record:
        raise ValueError("more cells than the header has columns")
    fields: dict[str, Any] = {}
    for column, cell in record.items():
        if cell is None or cell == "":
            continue
        if column == "tags":
            fields[column] = [tag for tag in cell.split(CSV_LIST_SEPARATOR) if tag]
        elif column in JSON_CSV_COLUMNS:
            try:
                fields[column] = json.loads(cell)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{column}: not JSON: {exc.msg}") from exc
        else:
            fields[column] = cell
    return fields


def checked(row: Row) -> ImportItem | str:
    """The row as a device to register, or ``"line N: field: why"``."""
    if row.fields is None:
        return f"line {row.line}: {row.error}"
    try:
        item = DeviceImportItem.model_validate(row.fields)
        return new_device(item), item.token()
    except pydantic.ValidationError as exc:
        return f"line {row.line}: {_pydantic_message(exc)}"
    except msgspec.ValidationError as exc:
        return f"line {row.line}: {field_error(exc).describe()}"


def _pydantic_message(exc: pydantic.ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "row"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def chunks(rows: Iterable[Row], size: int, tally: Tally) -> Iterator[list[ImportItem]]:
    """Checked devices in lists of at most ``size``; bad rows, and ids or tokens repeated
    inside one chunk, go to ``tally.failures`` (a repeat in a later chunk is existing)."""
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        items: list[ImportItem] = []
        line_of: dict[str, int] = {}
        for row in batch:
            result = checked(row)
            if isinstance(result, str):
                tally.failures.append(result)
                continue
            new, token = result
            key = token_key(token)
            keys = [new.device_id] + ([f"token:{key}"] if key else [])
            repeated = next((line_of[key] for key in keys if key in line_of), None)
            if repeated is not None:
                what = "device_id" if new.device_id in line_of else token_field(token)
                tally.failures.append(f"line {row.line}: {what}: repeats line {repeated}")
                continue
            line_of.update(dict.fromkeys(keys, row.line))
            items.append(result)
        if items:
            yield items


async def import_chunk(
    registry: DeviceRegistry, items: list[ImportItem], tally: Tally
) -> ImportResult:
    """Register ``items``; a device whose token is another device's is dropped (failed) and the
    rest sent again. ``ImportNotPublished`` goes to the caller (it carries the tokens)."""
    while True:
        try:
            return await registry.create_many(items)
        except TokenInUse as exc:
            kept = [item for item in items if item[0].device_id != exc.device_id]
            if exc.device_id is None or len(kept) == len(items):
                raise
            tally.failures.append(f"device {exc.device_id}: token_plain: {exc}")
            items = kept


class TokenFile:
    """The ``--tokens-out`` CSV: created 0600 (refused if it exists, unless ``force``)."""

    def __init__(self, path: Path, *, force: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        descriptor = os.open(path, flags, 0o600)
        os.fchmod(descriptor, 0o600)  # an existing file (--force) keeps no wider mode
        self._file: IO[str] = os.fdopen(descriptor, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["device_id", "token"])

    def write(self, created: list[tuple[str, str | None]]) -> None:
        """Append and sync: the tokens are on disk before the next chunk is sent. Devices
        imported with their token's hash have no new token to write."""
        self._writer.writerows((i, token) for i, token in created if token is not None)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

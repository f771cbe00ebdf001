"""``fleetstream devices import``'s parts without services: reading CSV and JSON lines,
checking rows with the API's rules, chunking, a taken token, the tokens file."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.device_import import ImportItem
from cli.device_import import (
    Row,
    Tally,
    TokenFile,
    UnreadableFile,
    chunks,
    file_format,
    import_chunk,
    read_rows,
)
from cli.devices_commands import devices_app
from connectors.registry import DeviceRegistry
from schemas.devices import hash_token
from tests.unit.registry_fakes import MemoryPublisher, MemoryStore

TOKEN = "a-given-token-0001"  # noqa: S105 - a test token


def test_format_by_suffix_else_by_the_first_line() -> None:
    assert file_format("devices.CSV", "{") == "csv"
    assert file_format("devices.jsonl", "device_id") == "jsonl"
    assert file_format("-", '  {"device_id": "a"}') == "jsonl"
    assert file_format("-", "device_id,profile") == "csv"


def test_csv_rows_leave_empty_cells_out_split_tags_parse_metadata_and_count_lines() -> None:
    text = (
        "device_id,profile,tags,metadata,is_enabled,inactivity_timeout_s\n"
        'a,esp32,roof;north,"{""floor"": 2}",false,300\n'
        "b,,,,,\n"
        'c,,,"{bad",,\n'
        "d,,,,,,extra\n"
    )
    rows = list(read_rows(io.StringIO(text), "csv"))
    assert rows[0] == Row(
        2,
        {
            "device_id": "a",
            "profile": "esp32",
            "tags": ["roof", "north"],
            "metadata": {"floor": 2},
            "is_enabled": "false",
            "inactivity_timeout_s": "300",
        },
    )
    assert rows[1] == Row(3, {"device_id": "b"})
    assert (
        rows[2].line == 4 and rows[2].fields is None and "metadata: not JSON" in str(rows[2].error)
    )
    assert rows[3].line == 5 and "more cells" in str(rows[3].error)


def test_json_lines_skip_blank_lines_and_report_what_is_not_an_object() -> None:
    lines = [json.dumps({"device_id": "a"}), "", "[1]", "{nope", json.dumps({"device_id": "b"})]
    rows = list(read_rows(io.StringIO("\n".join(lines) + "\n"), "jsonl"))
    assert [row.line for row in rows] == [1, 3, 4, 5]
    assert rows[0].fields == {"device_id": "a"} and rows[3].fields == {"device_id": "b"}
    assert rows[1].error == "not a JSON object" and "not JSON" in str(rows[2].error)


def test_a_file_that_stops_being_text_stops_the_reading() -> None:
    broken = io.TextIOWrapper(io.BytesIO(b"device_id\na\n\xff\xfe\n"), encoding="utf-8")
    with pytest.raises(UnreadableFile):
        list(read_rows(broken, "csv"))


def _rows(*fields: dict[str, Any]) -> list[Row]:
    return [Row(number, dict(item)) for number, item in enumerate(fields, start=2)]


def test_chunks_have_at_most_size_devices_with_the_apis_rules_and_text_coerced() -> None:
    tally = Tally()
    rows = _rows(*({"device_id": f"d{n}", "is_enabled": "false"} for n in range(5)))
    batches = list(chunks(rows, 2, tally))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    new, token = batches[0][0]
    assert new.device_id == "d0" and new.is_enabled is False and token is None
    assert tally.failures == []


def test_bad_and_repeated_rows_fail_naming_line_and_field_and_the_others_go_on() -> None:
    tally = Tally()
    rows = [
        *_rows(
            {"device_id": "a", "token_plain": TOKEN},
            {"device_id": "b", "profile": "-x"},
            {"device_id": "a"},
            {"device_id": "c", "token_plain": TOKEN},
            {"device_id": "d", "colour": "red"},
            {"device_id": "e"},
        ),
        Row(8, None, "not JSON: Expecting value"),
    ]
    (batch,) = list(chunks(rows, 100, tally))
    assert [new.device_id for new, _ in batch] == ["a", "e"]
    assert [failure.split(":")[0:2] for failure in tally.failures] == [
        ["line 3", " profile"],
        ["line 4", " device_id"],
        ["line 5", " token_plain"],
        ["line 6", " colour"],
        ["line 8", " not JSON"],
    ]
    assert "repeats line 2" in tally.failures[1]


async def test_a_taken_token_drops_only_its_device_and_the_rest_is_registered() -> None:
    store = MemoryStore()
    registry = DeviceRegistry(store, MemoryPublisher())
    await registry.create_many(list(_items({"device_id": "holder", "token_plain": TOKEN})))
    tally = Tally()
    items = _items({"device_id": "a"}, {"device_id": "b", "token_plain": TOKEN}, {"device_id": "c"})
    result = await import_chunk(registry, items, tally)
    assert [device_id for device_id, _ in result.created] == ["a", "c"]
    assert len(tally.failures) == 1 and tally.failures[0].startswith("device b: token_plain")
    assert store.rows["holder"].token_hash == hash_token(TOKEN)


def _items(*fields: dict[str, Any]) -> list[ImportItem]:
    (batch,) = list(chunks(_rows(*fields), 100, Tally()))
    return batch


def test_token_file_is_0600_refuses_to_overwrite_and_force_truncates(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    tokens = TokenFile(path, force=False)
    tokens.write([("a", "token-a")])
    tokens.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines() == ["device_id,token", "a,token-a"]
    with pytest.raises(FileExistsError):
        TokenFile(path, force=False)
    path.chmod(0o644)
    TokenFile(path, force=True).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines() == ["device_id,token"]


SEED004_EXPORT = (
    "device_id,point_id,register_id,token_sha256,is_enabled\n"
    "6f1c1a52-0d4e-4a57-9a43-2f2b6a1d9e01,0b7b3a4e-3c2d-4f5e-8a9b-0c1d2e3f4a5b,"
    "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f,{digest},f\n"
)
"""What ``docs/operations.md``'s export query makes of a seed 004 ``devices`` row (psql's CSV
writes booleans as t/f)."""


async def test_a_seed004_export_keeps_its_token_hash_and_writes_no_token(tmp_path: Path) -> None:
    text = SEED004_EXPORT.format(digest=hash_token(TOKEN))
    rows = list(read_rows(io.StringIO(text), "csv"))
    tally = Tally()
    (items,) = list(chunks(rows, 100, tally))
    assert tally.failures == []
    store = MemoryStore()
    result = await import_chunk(DeviceRegistry(store, MemoryPublisher()), items, tally)
    (device_id,) = store.rows
    assert result.created == [(device_id, None)]
    assert store.rows[device_id].token_hash == hash_token(TOKEN)
    assert not store.rows[device_id].is_enabled
    tokens = TokenFile(tmp_path / "tokens.csv", force=False)
    tokens.write(result.created)
    tokens.close()
    assert (tmp_path / "tokens.csv").read_text().splitlines() == ["device_id,token"]


def test_a_hash_repeating_another_rows_plain_token_fails_naming_token_sha256() -> None:
    tally = Tally()
    rows = _rows(
        {"device_id": "a", "token_plain": TOKEN},
        {"device_id": "b", "token_sha256": hash_token(TOKEN)},
    )
    (batch,) = list(chunks(rows, 100, tally))
    assert [new.device_id for new, _ in batch] == ["a"]
    assert tally.failures == ["line 3: token_sha256: repeats line 2"]


def test_the_import_help_names_both_token_fields() -> None:
    """An operator migrating seed 004's registry learns from ``--help`` that hashes import."""
    result = CliRunner().invoke(devices_app, ["import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "token_plain" in text
    assert "token_sha256: the hex SHA-256 of the device's token" in text

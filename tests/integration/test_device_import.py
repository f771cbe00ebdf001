"""Bulk registration through the real stack: ``POST /api/v1/admin/devices/import`` and
``fleetstream devices import`` → Postgres → fleet.devices.v1 → another API instance's device
cache, which then takes the devices' readings.

Each test uses its own device id prefix (the Postgres database is shared) and deletes its rows
at the end; its topics are its own (the ``pipeline`` fixture)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.app import create_app
from schemas.devices import hash_token
from schemas.settings import Settings
from tests.factories import reading
from tests.integration.fleet import ADMIN, ADMIN_DEVICES
from tests.integration.processes import PROJECT_ROOT
from tests.support import settings_env, wait_until

IMPORT = f"{ADMIN_DEVICES}/import"
CHUNK = 10_000
SAMPLE = 300
CLI_DEVICES = 2_500
"""Rows of the CLI's CSV test (docs/operations.md's 100,000-device figure: this set to 100_000)."""
REQUEST_TIMEOUT_S = 180.0
"""A bound on one chunk's request (a hang fails the test); the rate is measured, not asserted."""


@asynccontextmanager
async def api_instance(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://fleet.test", timeout=REQUEST_TIMEOUT_S
        ) as client:
            yield client


@pytest.fixture
async def admin_api(pipeline: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The instance that registers."""
    async with api_instance(pipeline) as client:
        yield client


@pytest.fixture
async def device_api(pipeline: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another instance: it knows the devices only from fleet.devices.v1."""
    async with api_instance(pipeline) as client:
        yield client


@pytest.fixture
async def prefix(db: asyncpg.Connection) -> AsyncIterator[str]:
    """A device id prefix of this test; its rows are deleted afterwards."""
    value = f"imp-{uuid.uuid4().hex[:10]}"
    yield value
    await db.execute("DELETE FROM devices WHERE device_id LIKE $1", f"{value}-%")


def ids(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{n:07d}" for n in range(start, start + count)]


async def import_devices(client: httpx.AsyncClient, devices: Sequence[dict[str, Any]]) -> Any:
    response = await client.post(IMPORT, json={"devices": list(devices)}, headers=ADMIN)
    assert response.status_code == 200, response.text[:2000]
    return response.json()


async def stored(db: asyncpg.Connection, prefix: str) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM devices WHERE device_id LIKE $1", f"{prefix}-%")
    )


async def ingest_status(client: httpx.AsyncClient, device_id: str, token: str) -> int:
    response = await client.post(
        "/v1/readings", json=reading(device_id), headers={"X-API-Key": token}
    )
    return response.status_code


async def wait_all_ingest(
    client: httpx.AsyncClient, tokens: dict[str, str], expected: int = 202
) -> None:
    """Until each device's reading gets ``expected`` from ``client`` (its cache follows the
    topic, so this waits for the publish to reach it)."""
    pending = dict(tokens)

    async def all_answer() -> bool:
        answers = await asyncio.gather(
            *(ingest_status(client, device_id, token) for device_id, token in pending.items())
        )
        for (device_id, _), status in zip(list(pending.items()), answers, strict=True):
            if status == expected:
                del pending[device_id]
        return not pending

    await wait_until(
        all_answer, timeout_s=60, what=lambda: f"{len(pending)} devices to get {expected}"
    )


@pytest.mark.slow
async def test_route_imports_100k_devices_that_then_ingest_and_reimport_is_existing(
    admin_api: httpx.AsyncClient,
    device_api: httpx.AsyncClient,
    db: asyncpg.Connection,
    prefix: str,
) -> None:
    all_ids = ids(prefix, 100_000)
    tokens: dict[str, str] = {}
    started = time.perf_counter()
    for start in range(0, len(all_ids), CHUNK):
        chunk = [{"device_id": d, "profile": "esp32"} for d in all_ids[start : start + CHUNK]]
        outcome = await import_devices(admin_api, chunk)
        assert outcome["existing"] == []
        tokens.update((c["device_id"], c["token"]) for c in outcome["created"])
    elapsed = time.perf_counter() - started
    print(
        f"\nimport route: {len(all_ids)} devices in {elapsed:.1f} s, {len(all_ids) / elapsed:.0f}/s"
    )

    assert sorted(tokens) == all_ids
    assert len(set(tokens.values())) == len(all_ids)
    assert await stored(db, prefix) == len(all_ids)
    row = await db.fetchrow(
        "SELECT profile, token_hash FROM devices WHERE device_id = $1", all_ids[-1]
    )
    assert row["profile"] == "esp32"
    assert row["token_hash"] == hash_token(tokens[all_ids[-1]])

    # The admin list pages through the 100,000 by device_id, filtered by the id prefix.
    listed = await admin_api.get(
        "/api/v1/admin/devices",
        params={"search": prefix, "profile": "esp32", "limit": 1000, "offset": 99_500},
        headers=ADMIN,
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["total"] == len(all_ids)
    assert [item["device_id"] for item in page["items"]] == all_ids[99_500:]

    sample = random.Random(24).sample(all_ids, SAMPLE)
    await wait_all_ingest(device_api, {d: tokens[d] for d in sample})

    again = await import_devices(admin_api, [{"device_id": d} for d in all_ids[:CHUNK]])
    assert again == {"created": [], "existing": all_ids[:CHUNK]}
    # Left as they were: the first token still works, the row is unchanged.
    assert await ingest_status(device_api, all_ids[0], tokens[all_ids[0]]) == 202
    assert await stored(db, prefix) == len(all_ids)


async def test_route_mixes_new_and_existing_and_keeps_given_tokens_and_disabled(
    admin_api: httpx.AsyncClient, device_api: httpx.AsyncClient, db: asyncpg.Connection, prefix: str
) -> None:
    first, second, third = ids(prefix, 3)
    given = f"given-token-{uuid.uuid4().hex}"
    one = await import_devices(admin_api, [{"device_id": first, "token_plain": given}])
    assert one == {"created": [{"device_id": first, "token": given}], "existing": []}

    two = await import_devices(
        admin_api,
        [
            {"device_id": first, "token_plain": given},  # a re-run: its own token, no 409
            {"device_id": second, "tags": ["roof", "north"], "metadata": {"floor": 3}},
            {"device_id": third, "is_enabled": False},
        ],
    )
    assert [c["device_id"] for c in two["created"]] == [second, third]
    assert two["existing"] == [first]
    tokens = {first: given, **{c["device_id"]: c["token"] for c in two["created"]}}
    await wait_all_ingest(device_api, {first: given, second: tokens[second]})
    # The disabled one is known to the cache (published) and refused.
    await wait_all_ingest(device_api, {third: tokens[third]}, expected=401)

    row = await db.fetchrow("SELECT tags, metadata::text FROM devices WHERE device_id = $1", second)
    assert list(row["tags"]) == ["roof", "north"]
    assert json.loads(row["metadata"]) == {"floor": 3}


async def problem(client: httpx.AsyncClient, body: Any, status: int) -> dict[str, Any]:
    response = await client.post(IMPORT, json=body, headers=ADMIN)
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    return document


def fields(document: dict[str, Any]) -> list[str]:
    return [error["field"] for error in document["errors"]]


async def test_route_refuses_bad_items_whole_and_stores_nothing(
    admin_api: httpx.AsyncClient, db: asyncpg.Connection, prefix: str
) -> None:
    a, b, c, holder = ids(prefix, 4)
    taken = f"taken-token-{uuid.uuid4().hex}"
    await import_devices(admin_api, [{"device_id": holder, "token_plain": taken}])

    bad = await problem(
        admin_api, {"devices": [{"device_id": a}, {"device_id": b, "profile": "-no"}]}, 422
    )
    assert fields(bad) == ["body.devices.1.profile"]
    duplicate = await problem(
        admin_api, {"devices": [{"device_id": a}, {"device_id": b}, {"device_id": a}]}, 422
    )
    assert fields(duplicate) == ["body.devices.2.device_id"]
    in_use = await problem(
        admin_api, {"devices": [{"device_id": a}, {"device_id": b, "token_plain": taken}]}, 409
    )
    assert fields(in_use) == ["body.devices.1.token_plain"]
    too_many = await problem(
        admin_api, {"devices": [{"device_id": f"{c}-{n}"} for n in range(CHUNK + 1)]}, 422
    )
    assert fields(too_many) == ["body.devices"]
    empty = await problem(admin_api, {"devices": []}, 422)
    assert fields(empty) == ["body.devices"]
    unauthorized = await admin_api.post(IMPORT, json={"devices": [{"device_id": a}]})
    assert unauthorized.status_code == 401

    assert await stored(db, prefix) == 1  # only the holder


async def devices_cli(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``fleetstream devices ARGS`` in a child process (in a thread: the test's API instances
    keep following the topic meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "devices", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings_env(settings)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def read_tokens(path: Path) -> dict[str, str]:
    with path.open(newline="") as file:
        return {row["device_id"]: row["token"] for row in csv.DictReader(file)}


async def test_cli_imports_csv_with_a_bad_row_then_reruns_as_existing(
    pipeline: Settings,
    device_api: httpx.AsyncClient,
    db: asyncpg.Connection,
    prefix: str,
    tmp_path: Path,
) -> None:
    count = CLI_DEVICES
    all_ids = ids(prefix, count)
    source = tmp_path / "devices.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["device_id", "profile", "tags", "metadata", "is_enabled"])
        for n, device_id in enumerate(all_ids):
            writer.writerow([device_id, "esp32", "roof;north", json.dumps({"n": n}), "true"])
        writer.writerow([f"{prefix}-bad", "-not-a-label", "", "", ""])
    out = tmp_path / "tokens.csv"

    started = time.perf_counter()
    result = await devices_cli(pipeline, "import", str(source), "--tokens-out", str(out))
    elapsed = time.perf_counter() - started
    print(f"\nCLI import: {count} devices in {elapsed:.1f} s, {count / elapsed:.0f}/s")
    assert result.returncode == 1, result.stderr  # one row failed
    assert f"created {count}, existing 0, failed 1" in result.stderr
    assert f"line {count + 2}: profile" in result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    tokens = read_tokens(out)
    assert sorted(tokens) == all_ids
    assert await stored(db, prefix) == count
    sample = random.Random(7).sample(all_ids, min(SAMPLE, count))
    await wait_all_ingest(device_api, {d: tokens[d] for d in sample})

    refused = await devices_cli(pipeline, "import", str(source), "--tokens-out", str(out))
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert read_tokens(out) == tokens  # untouched
    again = await devices_cli(pipeline, "import", str(source), "--tokens-out", str(out), "--force")
    assert f"created 0, existing {count}, failed 1" in again.stderr
    assert read_tokens(out) == {}


async def test_cli_imports_json_lines_from_stdin(
    pipeline: Settings,
    device_api: httpx.AsyncClient,
    db: asyncpg.Connection,
    prefix: str,
    tmp_path: Path,
) -> None:
    first, second = ids(prefix, 2)
    given = f"given-token-{uuid.uuid4().hex}"
    lines = [
        json.dumps({"device_id": first, "token_plain": given, "tags": ["a"]}),
        "",
        json.dumps({"device_id": second, "metadata": {"site": "x"}, "is_enabled": False}),
    ]
    out = tmp_path / "tokens.csv"
    result = await devices_cli(
        pipeline, "import", "-", "--tokens-out", str(out), stdin="\n".join(lines) + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert "created 2, existing 0, failed 0" in result.stderr
    tokens = read_tokens(out)
    assert tokens[first] == given
    await wait_all_ingest(device_api, {first: given})
    await wait_all_ingest(device_api, {second: tokens[second]}, expected=401)
    row = await db.fetchrow("SELECT tags, metadata::text FROM devices WHERE device_id = $1", first)
    assert list(row["tags"]) == ["a"]

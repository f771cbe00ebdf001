"""``fleetstream devices ...`` end to end: a child process per command, real Postgres and Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import asyncpg

from schemas.devices import decode_device, hash_token
from schemas.settings import Settings
from tests.factories import device_ids
from tests.integration.kafka_tools import produce
from tests.integration.processes import PROJECT_ROOT
from tests.integration.registry_tools import latest, registry_records
from tests.support import settings_env


def devices(settings: Settings, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "cli.main", "devices", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode == 0) == ok, f"{args}: {result.returncode}\n{result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def on_topic(settings: Settings, device_id: str) -> tuple[bool, bytes | None]:
    kafka = settings.kafka
    records = registry_records(kafka.bootstrap_servers, settings.topics.devices, kafka.partitions)
    return latest(records, device_id)


async def test_devices_cli_create_list_disable_rotate_delete(
    pipeline: Settings, db: asyncpg.Connection
) -> None:
    device_id = device_ids(1, prefix="cli")[0]
    created = as_json(
        devices(
            pipeline,
            "create",
            device_id,
            "--profile",
            "esp32",
            "--tag",
            "roof",
            "--tag",
            "north",
            "--metadata",
            '{"floor": 7}',
            "--json",
        )
    )
    token = created["token"]
    assert created["tags"] == ["roof", "north"] and "token_hash" not in created
    stored = await db.fetchval("SELECT token_hash FROM devices WHERE device_id = $1", device_id)
    assert stored == hash_token(token)
    _, value = on_topic(pipeline, device_id)
    assert value is not None and decode_device(value).token_hash == stored

    listed = as_json(devices(pipeline, "list", "--tag", "north", "--search", device_id, "--json"))
    assert [d["device_id"] for d in listed["items"]] == [device_id]
    table = devices(pipeline, "list", "--search", device_id).stdout
    assert device_id in table and "DEVICE_ID" in table
    shown = devices(pipeline, "show", device_id).stdout
    assert device_id in shown and token not in shown  # the token is shown once, on create

    assert as_json(devices(pipeline, "disable", device_id, "--json"))["is_enabled"] is False
    _, value = on_topic(pipeline, device_id)
    assert value is not None and decode_device(value).is_enabled is False
    disabled = as_json(devices(pipeline, "list", "--disabled", "--search", device_id, "--json"))
    assert [d["device_id"] for d in disabled["items"]] == [device_id]

    rotated = as_json(devices(pipeline, "rotate", device_id, "--json"))
    assert rotated["token"] != token
    stored = await db.fetchval("SELECT token_hash FROM devices WHERE device_id = $1", device_id)
    assert stored == hash_token(rotated["token"])

    assert "deleted" in devices(pipeline, "delete", device_id, "--yes").stdout
    assert on_topic(pipeline, device_id) == (True, None)
    missing = devices(pipeline, "show", device_id, ok=False)
    assert "not registered" in missing.stderr


async def test_devices_cli_refuses_bad_input_and_duplicates_with_one_message(
    pipeline: Settings,
) -> None:
    device_id = device_ids(1, prefix="cli")[0]
    devices(pipeline, "create", device_id)
    duplicate = devices(pipeline, "create", device_id, ok=False)
    assert "already registered" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr
    bad = devices(pipeline, "create", "not an id", ok=False)
    assert "device_id" in bad.stderr
    unknown = devices(pipeline, "disable", f"{device_id}-nope", ok=False)
    assert "not registered" in unknown.stderr


async def test_devices_resync_repairs_lost_and_stale_records(pipeline: Settings) -> None:
    kept, ghost = device_ids(2, prefix="cli")
    devices(pipeline, "create", kept)
    _, good = on_topic(pipeline, kept)
    assert good is not None
    # A lost tombstone (ghost deleted from Postgres, still on the topic) and a stale document
    # (kept re-published as enabled=false although the table says enabled).
    stale = good.replace(b'"is_enabled":true', b'"is_enabled":false')
    assert stale != good
    produce(
        pipeline.kafka.bootstrap_servers,
        pipeline.topics.devices,
        [(ghost.encode(), good.replace(kept.encode(), ghost.encode())), (kept.encode(), stale)],
    )

    report = as_json(devices(pipeline, "resync", "--json"))
    assert report["tombstoned"] >= 1 and report["published"] >= 1
    assert on_topic(pipeline, ghost) == (True, None)
    _, value = on_topic(pipeline, kept)
    assert value is not None and decode_device(value).is_enabled is True

    # In step now: a second resync writes nothing more for these devices (other devices of the
    # shared test database may change meanwhile, so count records on our own topic).
    before = _record_count(pipeline, kept, ghost)
    devices(pipeline, "resync")
    assert _record_count(pipeline, kept, ghost) == before


def _record_count(settings: Settings, *device_ids: str) -> int:
    kafka = settings.kafka
    records = registry_records(kafka.bootstrap_servers, settings.topics.devices, kafka.partitions)
    return sum(1 for key, _ in records if key in device_ids)

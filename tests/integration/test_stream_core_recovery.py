"""The stream core across crashes and rebalances, rollups against raw rows, dead-letter tools."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from confluent_kafka import KafkaException

from schemas.envelopes import encode_item, raw_envelope
from schemas.settings import Settings
from schemas.status import decode_device_state
from tests.factories import device_ids, raw_event
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import produce, read_to_end
from tests.integration.processes import WorkerProcess, run_cli
from tests.integration.stream_core import (
    core_settings,
    redis_client,
    status_hash,
    transition_problems,
    transitions,
)
from tests.support import wait_until

TIMEOUT_S = 120.0
GRACE_S = 60
SILENT_S = 15
"""Inactivity timeout of the SIGKILL test's devices: longer than a busy worker's lag, shorter
than its restart."""


@pytest.fixture
def pipeline(pipeline: Settings) -> Settings:
    return core_settings(pipeline, rollup_grace_s=GRACE_S)


def recent(device_id: str, seconds_ago: float, n: int) -> dict[str, Any]:
    """A reading timestamped ``seconds_ago`` before now (inside the rollup grace period)."""
    ts = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return {
        "device_id": device_id,
        "timestamp": ts.isoformat(),
        "sensors": {
            "mq134": {"gas_concentration": 10.0 + n % 17, "raw_value": 100 + n % 50},
            "pir": {"motion_detected": n % 2 == 0},
        },
    }


def table_states(settings: Settings) -> dict[str, Any]:
    """The status table as its changelog holds it: the last value per device."""
    topic = f"{settings.worker.app_id}-device-status-changelog"
    states = {}
    try:
        values = read_to_end(settings.kafka.bootstrap_servers, topic)
    except KafkaException:  # Faust creates the topic as the worker starts: not there yet
        return {}
    for value in values:
        state = decode_device_state(value)
        states[state.device_id] = state
    return states


async def rows_per_device(db: asyncpg.Connection, devices: list[str]) -> Counter[str]:
    rows = await db.fetch(
        "SELECT device_id, event_id::text AS id FROM readings WHERE device_id = ANY($1)", devices
    )
    assert len({row["id"] for row in rows}) == len(rows)
    return Counter(row["device_id"] for row in rows)


async def recomputed_rollups(db: asyncpg.Connection, devices: list[str]) -> dict[Any, Any]:
    rows = await db.fetch(
        """
        SELECT r.device_id, s.key || '.' || f.key AS field, date_trunc('minute', r.ts) AS w,
               count(*) AS n, min(f.value::text::float8) AS lo, max(f.value::text::float8) AS hi,
               sum(f.value::text::float8) AS total
        FROM readings r, jsonb_each(r.sensors) s, jsonb_each(s.value) f
        WHERE r.device_id = ANY($1) AND jsonb_typeof(f.value) = 'number'
          AND r.received_at
              <= date_trunc('minute', r.ts) + interval '1 minute' + $2 * interval '1 second'
        GROUP BY 1, 2, 3
        """,
        devices,
        GRACE_S,
    )
    return {
        (row["device_id"], row["field"], row["w"]): (row["n"], row["lo"], row["hi"], row["total"])
        for row in rows
    }


async def stored_rollups(db: asyncpg.Connection, devices: list[str]) -> dict[Any, Any]:
    rows = await db.fetch(
        "SELECT device_id, field, window_start, count, min, max, sum FROM readings_1m "
        "WHERE device_id = ANY($1)",
        devices,
    )
    return {
        (row["device_id"], row["field"], row["window_start"]): (
            row["count"],
            row["min"],
            row["max"],
            row["sum"],
        )
        for row in rows
    }


def assert_same_rollups(stored: dict[Any, Any], recomputed: dict[Any, Any]) -> None:
    assert stored.keys() == recomputed.keys()
    for key, (count, low, high, total) in recomputed.items():
        assert stored[key][:3] == (count, low, high), key
        assert stored[key][3] == pytest.approx(total), key


async def test_rollups_match_a_recomputation_from_the_stored_rows(
    fleet: Fleet, pipeline: Settings, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    devices = device_ids(3)
    await fleet.enroll(devices)
    n = 0
    for seconds_ago in (150, 100, 90, 40, 5):  # about three windows
        for device_id in devices:
            n += 1
            assert (await fleet.post(recent(device_id, seconds_ago, n))).status_code == 202
    # Late: its window ended more than the grace period before the edge got it.
    late = recent(devices[0], 200, 999)
    assert (await fleet.post(late)).status_code == 202
    expected = len(devices) * 5 + 1

    async def settled() -> bool:
        stored = sum((await rows_per_device(db, devices)).values())
        if stored < expected:
            return False
        return await stored_rollups(db, devices) == await _rounded(db, devices)

    await wait_until(settled, timeout_s=TIMEOUT_S, what=lambda: f"rollups\n{worker.log_tail()}")
    assert_same_rollups(await stored_rollups(db, devices), await recomputed_rollups(db, devices))
    late_minute = datetime.fromisoformat(late["timestamp"]).replace(second=0, microsecond=0)
    stored_windows = {key[2] for key in await stored_rollups(db, devices) if key[0] == devices[0]}
    assert late_minute not in stored_windows


async def _rounded(db: asyncpg.Connection, devices: list[str]) -> dict[Any, Any]:
    """The recomputation, with the stored sums where they agree to float precision."""
    stored = await stored_rollups(db, devices)
    recomputed = await recomputed_rollups(db, devices)
    for key, value in recomputed.items():
        if key in stored and stored[key][3] == pytest.approx(value[3]):
            recomputed[key] = (*value[:3], stored[key][3])
    return recomputed


async def _assert_rollups_catch_up(db: asyncpg.Connection, devices: list[str]) -> None:
    """The stored rollups equal the recomputation once the last readings' are published (with
    their interval, so up to that much later)."""

    async def caught_up() -> bool:
        return await stored_rollups(db, devices) == await _rounded(db, devices)

    with contextlib.suppress(AssertionError):  # the assertion below shows the difference
        await wait_until(caught_up, timeout_s=TIMEOUT_S, what="rollups")
    assert_same_rollups(await stored_rollups(db, devices), await recomputed_rollups(db, devices))


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
async def test_after_sigkill_and_restart_table_and_sinks_agree(
    fleet: Fleet,
    pipeline: Settings,
    worker_factory: list[WorkerProcess],
    db: asyncpg.Connection,
    tmp_path: Path,
    store: str,
) -> None:
    settings = pipeline.model_copy(
        update={"stream": pipeline.stream.model_copy(update={"table_store": store})}
    )
    devices = device_ids(6)
    # A short timeout: while the worker is down the devices fall silent, so the restarted one
    # takes them offline (seq 2) and possibly online again: transitions across the SIGKILL.
    await fleet.enroll(devices, inactivity_timeout_s=SILENT_S)
    first = WorkerProcess(settings, tmp_path / "worker-1.log")
    worker_factory.append(first)
    first.start()
    accepted: Counter[str] = Counter()

    async def post_round(start: int, rounds: int) -> None:
        for r in range(start, start + rounds):
            for device_id in devices:
                batch = [recent(device_id, 1, r * 10 + k) for k in range(10)]
                response = await fleet.post(batch)
                assert response.status_code == 202, response.text
                accepted[device_id] += 10

    await post_round(0, 3)

    async def some_processed() -> bool:
        return sum((await rows_per_device(db, devices)).values()) > 0

    await wait_until(some_processed, timeout_s=TIMEOUT_S, what=lambda: first.log_tail())
    await post_round(3, 5)  # in flight while the worker dies
    first.kill()
    await post_round(8, 2)
    second = WorkerProcess(settings, tmp_path / "worker-2.log")
    worker_factory.append(second)
    second.start()
    redis = redis_client(pipeline)

    async def all_agree() -> bool:
        if await rows_per_device(db, devices) != accepted:
            return False
        states = table_states(pipeline)
        if {d: states[d].count if d in states else 0 for d in devices} != accepted:
            return False
        statuses = [await status_hash(redis, pipeline, d) for d in devices]
        if not all(
            s.get("last_event_id") == states[d].last_event_id
            for s, d in zip(statuses, devices, strict=True)
        ):
            return False
        # A device's rollups are published once per FLEET_STREAM__ROLLUP_PUBLISH_INTERVAL_S
        # (up to that much later): wait for them to equal the recomputation; the assertion
        # below shows the diff.
        return await stored_rollups(db, devices) == await _rounded(db, devices)

    await wait_until(all_agree, timeout_s=TIMEOUT_S, what=lambda: f"agreement\n{second.log_tail()}")

    # Readings processed more than SILENT_S after the edge took them bring no one online, and
    # a loaded machine can make every reading so far that late: one more, taken now by an idle
    # worker, puts each device online (an odd seq) before its silence takes it offline.
    await post_round(10, 1)
    seen: dict[str, object] = {}

    async def all_offline() -> bool:  # silent since the last post: the timer's seq is even
        changes = transitions(pipeline)
        lasts = [max((c.seq for c in changes[d]), default=0) for d in devices]
        shown = [(await status_hash(redis, pipeline, d)).get("seq") for d in devices]
        seen.update(topic=lasts, redis=shown)
        return all(n > 0 and n % 2 == 0 for n in lasts) and shown == [str(n) for n in lasts]

    await wait_until(
        all_offline, timeout_s=TIMEOUT_S, what=lambda: f"offline: {seen}\n{second.log_tail()}"
    )
    await _assert_transitions_kept_their_promise(pipeline, devices)
    await _assert_rollups_catch_up(db, devices)
    await redis.aclose()


async def _assert_transitions_kept_their_promise(settings: Settings, devices: list[str]) -> None:
    """Per device, in published order (``transition_problems``); Redis shows the last one."""
    changes = transitions(settings)
    redis = redis_client(settings)
    try:
        for device_id in devices:
            assert transition_problems(changes[device_id]) == [], changes[device_id]
            last = max(change.seq for change in changes[device_id])
            status = await status_hash(redis, settings, device_id)
            assert status["seq"] == str(last) and status["online"] == ("1" if last % 2 else "0")
    finally:
        await redis.aclose()


async def test_two_workers_one_killed_moves_its_partitions_and_state_without_loss(
    fleet: Fleet,
    pipeline: Settings,
    worker_factory: list[WorkerProcess],
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    devices = device_ids(9)
    await fleet.enroll(devices)
    workers = [WorkerProcess(pipeline, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    for process in workers:
        worker_factory.append(process)
        process.start()
    accepted: Counter[str] = Counter()
    for r in range(3):
        for device_id in devices:
            assert (
                await fleet.post([recent(device_id, 1, r * 5 + k) for k in range(5)])
            ).status_code == 202
            accepted[device_id] += 5

    async def counted() -> bool:
        states = table_states(pipeline)
        return {d: states[d].count if d in states else 0 for d in devices} == accepted

    await wait_until(counted, timeout_s=TIMEOUT_S, what=lambda: workers[0].log_tail())
    workers[0].kill()
    for device_id in devices:
        assert (
            await fleet.post([recent(device_id, 1, 100 + k) for k in range(5)])
        ).status_code == 202
        accepted[device_id] += 5
    await wait_until(counted, timeout_s=TIMEOUT_S, what=lambda: workers[1].log_tail())
    assert await rows_per_device(db, devices) == accepted
    changes = transitions(pipeline)
    for device_id in devices:  # online once; the state moved, so no second "online"
        assert transition_problems(changes[device_id]) == [], changes[device_id]
        assert {c.seq for c in changes[device_id]} == {1}, changes[device_id]


def _cli(settings: Settings, *args: str) -> str:
    return run_cli(settings, "deadletters", *args)


async def test_dead_letters_can_be_listed_and_replayed_once(
    fleet: Fleet, pipeline: Settings, worker: WorkerProcess, db: asyncpg.Connection
) -> None:
    (device_id,) = device_ids(1)
    await fleet.enroll([device_id])
    path = f"/api/v1/admin/devices/{device_id}"

    async def set_enabled(enabled: bool) -> None:
        answer = await fleet.client.patch(path, json={"is_enabled": enabled}, headers=ADMIN)
        assert answer.status_code == 200, answer.text

    await set_enabled(False)
    # The edge refuses a disabled device; a reading that was already in flight (here: produced
    # straight to the raw topic) reaches the worker, whose policy dead-letters it.
    event = raw_event(recent(device_id, 1, 1))
    raw = raw_envelope([encode_item(event)])
    produce(pipeline.kafka.bootstrap_servers, pipeline.topics.raw, [(None, raw)])

    def letters() -> list[dict[str, Any]]:
        out = _cli(pipeline, "list", "--device", device_id, "--json")
        return [json.loads(line) for line in out.splitlines()]

    async def lettered(count: int) -> bool:
        return len(letters()) >= count

    await wait_until(lambda: lettered(1), timeout_s=TIMEOUT_S, what=lambda: worker.log_tail())
    (letter,) = letters()
    assert (letter["stage"], letter["event_id"]) == ("validate", event.event_id)
    assert "disabled" in letter["reason"]
    assert json.loads(_cli(pipeline, "replay", "--device", device_id, "--dry-run", "--json")) == {
        "letters": 1,
        "readings": 1,
        "records": 0,
        "dry_run": True,
        "skipped": {},
    }

    # Still disabled: the replayed reading fails again, now marked as replayed once ...
    _cli(pipeline, "replay", "--device", device_id)
    await wait_until(lambda: lettered(2), timeout_s=TIMEOUT_S, what="the second letter")
    # ... so replaying that letter is refused, while the first one may go again.
    await set_enabled(True)
    report = json.loads(_cli(pipeline, "replay", "--device", device_id, "--json"))
    assert (report["readings"], report["skipped"]) == (1, {"already replayed 1 time(s)": 1})

    async def stored() -> bool:
        rows = await db.fetch(
            "SELECT event_id::text AS id FROM readings WHERE device_id = $1", device_id
        )
        return [row["id"] for row in rows] == [event.event_id]

    await wait_until(stored, timeout_s=TIMEOUT_S, what=lambda: worker.log_tail())

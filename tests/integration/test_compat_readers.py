"""The seeds' readers through the real stack (docs/compat.md): seed 002's ``sensor-events``
channel and seed 001's ``sensor_data_queue`` fed by a worker's Redis sink with those profiles on,
the ``sensor_data``/``sensor_readings`` views over readings the pipeline stored, and a seed 004
registry imported with its token hashes.
"""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from api.app import create_app
from connectors.redis.seed_feeds import SEED001_QUEUE, SEED002_CHANNEL, SeedFeeds
from connectors.redis.wire import RedisPipe
from connectors.redis.writer import connect_commands
from schemas.devices import hash_token
from schemas.settings import CompatSettings, Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, ADMIN_DEVICES, Fleet
from tests.integration.mqtt_tools import FrontDevice, once_admitted
from tests.integration.processes import FrontProcess, WorkerProcess, run_cli
from tests.support import free_port, wait_until

QUEUE_MAX = 40
"""The queue's bound in these tests: fewer than the readings posted, so trimming shows."""
TIMEOUT_S = 120.0
MQTT_TOPIC = "neurobuild/sensors/{}/data"
"""Seed 002's topic."""


@pytest.fixture
def pipeline(pipeline: Settings) -> Iterator[Settings]:
    """The conftest's pipeline with seed 001's and 002's profiles on and a small queue bound."""
    yield pipeline.model_copy(
        update={
            "compat": CompatSettings(seeds="001,002"),
            "redis": pipeline.redis.model_copy(update={"legacy_list_max": QUEUE_MAX}),
        }
    )


@pytest.fixture
async def redis_client(pipeline: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(pipeline.redis.url)
    yield client
    await client.aclose()


def equipment(device_id: str, n: int) -> dict[str, Any]:
    """A seed 001 reading as the canonical route takes it (voltage kept in metadata)."""
    body = reading(
        device_id,
        n,
        {"equipment": {"temperature": 20.0 + n, "vibration": 0.5, "pressure": 3.2}},
    )
    return {**body, "metadata": {"voltage": 220.0 + n}}


async def test_each_reading_reaches_the_seed_channel_once_the_bounded_queue_and_the_views(
    fleet: Fleet,
    worker: WorkerProcess,
    redis_client: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    esp32, machines = device_ids(3), device_ids(2, prefix="PUMP-HALL")
    await fleet.enroll(esp32, metadata={"location": "hall 2"})
    await fleet.enroll(machines)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(SEED002_CHANNEL)
    received: Counter[str] = Counter()
    messages: dict[str, dict[str, Any]] = {}

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            event = json.loads(message["data"])
            if event["device_id"] in esp32 + machines:
                received[event["event_id"]] += 1
                messages[event["event_id"]] = event

    listener = asyncio.create_task(listen())
    try:
        accepted: list[str] = []
        for n in range(0, 60, 20):
            batch = [reading(esp32[i % 3], n + i) for i in range(20)]
            accepted += (await _accepted(fleet, batch))["event_ids"]
        machine_ids = (await _accepted(fleet, [equipment(machines[0], n) for n in range(5)]))[
            "event_ids"
        ]
        accepted += machine_ids
        # Published after all the others by the same sink, on one connection: once it is in,
        # any repeat of the others would be in too.
        (sentinel,) = (await _accepted(fleet, reading(esp32[0], 99)))["event_ids"]

        await wait_until(
            lambda: _true(sentinel in received),
            timeout_s=TIMEOUT_S,
            what=lambda: f"the sentinel on {SEED002_CHANNEL}\n{worker.log_tail()}",
        )
    finally:
        listener.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert {event_id: received[event_id] for event_id in accepted} == dict.fromkeys(accepted, 1)
    gas = messages[accepted[0]]
    assert gas["timestamp"] == gas["ts"] and "mq134" in gas["sensors"]
    assert gas["device_metadata"]["location"] == "hall 2"

    # Seed 001's queue got all 66 readings and kept the newest QUEUE_MAX of them.
    assert await redis_client.llen(SEED001_QUEUE) == QUEUE_MAX
    queued = [json.loads(item) for item in await redis_client.lrange(SEED001_QUEUE, 0, -1)]
    mine = {item["event_id"] for item in queued if item["device_id"] in esp32 + machines}
    assert len(mine) == QUEUE_MAX and mine <= {*accepted, sentinel}
    popped = cast(tuple[bytes, bytes] | None, await redis_client.brpop([SEED001_QUEUE], 5))
    assert popped is not None
    oldest = json.loads(popped[1])
    assert set(oldest) >= {"event_id", "device_id", "ts", "sensors"}  # the canonical reading

    await _views_hold_the_readings(db, esp32, machines[0], machine_ids)


async def _views_hold_the_readings(
    db: asyncpg.Connection, esp32: list[str], machine: str, machine_ids: list[str]
) -> None:
    async def stored() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM readings WHERE device_id = ANY($1)", [*esp32, machine]
        )
        return int(count) == 61 + len(machine_ids)

    await wait_until(stored, timeout_s=TIMEOUT_S, what="the readings in Postgres")
    rows = await db.fetch(
        'SELECT id::text, equipment_id, "timestamp", temperature, vibration, pressure, '
        "humidity, voltage, created_at FROM sensor_data WHERE equipment_id = $1 "
        'ORDER BY "timestamp"',
        machine,
    )
    assert [row["id"] for row in rows] == machine_ids
    assert [row["temperature"] for row in rows] == [20.0 + n for n in range(5)]
    assert [row["voltage"] for row in rows] == [220.0 + n for n in range(5)]
    assert all(row["humidity"] is None and row["pressure"] == 3.2 for row in rows)
    none = await db.fetchval("SELECT count(*) FROM sensor_data WHERE equipment_id = ANY($1)", esp32)
    assert none == 0  # readings without the equipment sensor are not seed 001's

    per_type = await db.fetch(
        "SELECT sensor_type, count(*) AS n, count(DISTINCT id) AS ids FROM sensor_readings "
        "WHERE device_id = ANY($1) GROUP BY sensor_type ORDER BY sensor_type",
        esp32,
    )
    assert [(r["sensor_type"], r["n"], r["ids"]) for r in per_type] == [
        ("ld2410", 61, 61),
        ("mq134", 61, 61),
        ("pir", 61, 61),
    ]
    row = await db.fetchrow(
        "SELECT id, data, metadata, received_at, created_at FROM sensor_readings "
        "WHERE device_id = $1 AND sensor_type = 'mq134' LIMIT 1",
        esp32[0],
    )
    assert row is not None and row["id"] > 0
    assert "gas_concentration" in json.loads(row["data"])
    assert json.loads(row["metadata"]) == {"location": "hall 2"}


async def _accepted(fleet: Fleet, body: Any) -> dict[str, Any]:
    response = await fleet.post(body)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _true(value: bool) -> bool:
    return value


async def test_a_seed004_registry_imported_with_its_hashes_keeps_the_devices_tokens(
    pipeline: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """``fleetstream devices import`` of seed 004's devices table (exported as docs/operations.md
    says): the recorders upload chunks with the tokens they had, which fleetstream never saw."""
    tokens = {str(uuid.uuid4()): f"recorder-token-{uuid.uuid4().hex}" for _ in range(3)}
    points = {device_id: str(uuid.uuid4()) for device_id in tokens}
    export = tmp_path / "seed004-devices.csv"
    with export.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["device_id", "point_id", "register_id", "token_sha256", "is_enabled"])
        for device_id, token in tokens.items():
            point = points[device_id]
            writer.writerow([device_id, point, point, hash_token(token), "t"])
    out = tmp_path / "tokens.csv"
    run_cli(pipeline, "devices", "import", str(export), "--tokens-out", str(out))
    assert out.read_text().splitlines() == ["device_id,token"]  # no new token to keep
    stored = await db.fetch(
        "SELECT device_id, token_hash FROM devices WHERE device_id = ANY($1)", list(tokens)
    )
    assert {r["device_id"]: r["token_hash"] for r in stored} == {
        device_id: hash_token(token) for device_id, token in tokens.items()
    }
    settings = pipeline.model_copy(
        update={"blob": pipeline.blob.model_copy(update={"root": tmp_path / "blobs"})}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await _upload_with_old_tokens(client, tokens, points)


OGG = b"OggS\x00\x02" + bytes(range(256)) * 8
"""A few KiB that start like an Ogg stream: a recorder's chunk."""


async def _chunk(
    client: httpx.AsyncClient, device_id: str, point: str, token: str
) -> httpx.Response:
    form = {
        "point_id": point,
        "register_id": point,
        "device_id": device_id,
        "start_ts": "2026-11-28T09:30:00Z",
        "end_ts": "2026-11-28T09:31:00Z",
        "codec": "opus",
        "sample_rate": "48000",
        "channels": "1",
    }
    return await client.post(
        "/api/v1/chunks",
        data=form,
        files={"chunk_file": ("chunk.ogg", OGG, "audio/ogg")},
        headers={"Authorization": f"Bearer {token}"},
    )


async def _upload_with_old_tokens(
    client: httpx.AsyncClient, tokens: dict[str, str], points: dict[str, str]
) -> None:
    async def all_stored() -> bool:
        answers = [
            await _chunk(client, device_id, points[device_id], token)
            for device_id, token in tokens.items()
        ]
        assert all(a.status_code in (200, 401) for a in answers), [a.text for a in answers]
        return all(a.status_code == 200 and a.json()["status"] == "ok" for a in answers)

    # 401 only until this instance's device cache has read the imported devices.
    await wait_until(all_stored, timeout_s=30, what="the imported recorders' old tokens to work")
    device_id = next(iter(tokens))
    wrong = await _chunk(client, device_id, points[device_id], "not-the-recorders-token")
    assert wrong.status_code == 401


FLEET = 100_000
"""Devices of the size test: one reading each, written as the sink's batches would be."""
SINK_BATCH = 10_000
FLEET_QUEUE_MAX = 10_000
"""FLEET_REDIS__LEGACY_LIST_MAX's default."""


@pytest.mark.slow
async def test_at_fleet_size_the_queue_stays_bounded_and_the_channel_carries_every_reading(
    pipeline: Settings, redis_client: aioredis.Redis
) -> None:
    """100,000 devices' readings in sink-sized batches, no queue consumer: the queue holds the
    newest 10,000, and a subscriber gets each reading once. The queue and channel are this
    test's own names (the seeds' are shared with whoever uses this Redis)."""
    run = uuid.uuid4().hex[:10]
    queue, channel = f"test-{run}-queue", f"test-{run}-sensor-events"
    items = [curated_item(f"dev-{run}-{n:06d}", n) for n in range(FLEET)]
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(channel)
    seen: Counter[str] = Counter()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                seen[json.loads(message["data"])["device_id"]] += 1

    listener = asyncio.create_task(listen())
    redis = pipeline.redis
    pipe = RedisPipe(redis.host, redis.port, connect_commands(redis.db))
    feeds = SeedFeeds(channel)
    try:
        for start in range(0, FLEET, SINK_BATCH):
            batch = items[start : start + SINK_BATCH]
            await pipe.execute(
                [("LPUSH", queue, *batch), ("LTRIM", queue, 0, FLEET_QUEUE_MAX - 1), *feeds(batch)]
            )
            assert await redis_client.llen(queue) <= FLEET_QUEUE_MAX
        await wait_until(
            lambda: _true(sum(seen.values()) >= FLEET),
            timeout_s=TIMEOUT_S,
            what=lambda: f"{FLEET} messages on the channel, got {sum(seen.values())}",
        )
        assert len(seen) == FLEET and set(seen.values()) == {1}
        newest = await redis_client.lindex(queue, 0)
        oldest = await redis_client.lindex(queue, -1)
        assert await redis_client.llen(queue) == FLEET_QUEUE_MAX
        assert json.loads(newest or b"{}")["device_id"] == f"dev-{run}-{FLEET - 1:06d}"
        assert json.loads(oldest or b"{}")["device_id"] == f"dev-{run}-{FLEET - 10_000:06d}"
    finally:
        listener.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await pipe.close()
        await redis_client.delete(queue)


def curated_item(device_id: str, n: int) -> bytes:
    """A curated reading's JSON as the Redis sink holds it (~300 bytes)."""
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=n)),
            "device_id": device_id,
            "ts": "2026-12-07T10:00:00Z",
            "received_at": "2026-12-07T10:00:01Z",
            "source": "http",
            "sensors": {"mq134": {"gas_concentration": 12.5 + n % 100}},
            "location": "hall 2",
            "tags": ["roof"],
        },
        separators=(",", ":"),
    ).encode()


async def test_seed002_devices_imported_by_their_key_hash_publish_over_the_mqtt_front(
    pipeline: Settings, tmp_path: Path
) -> None:
    """Seed 002's boards published over MQTT: imported with only their keys' SHA-256 (no
    Mosquitto password can be made from it), they connect to the MQTT front with the keys they
    have and get a PUBACK for their seed's topic."""
    keys = {device_id: f"esp32-key-{uuid.uuid4().hex}" for device_id in device_ids(2)}
    app = create_app(pipeline)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            devices = [
                {"device_id": d, "token_sha256": hash_token(k), "metadata": {"location": "lab"}}
                for d, k in keys.items()
            ]
            answer = await client.post(
                f"{ADMIN_DEVICES}/import", json={"devices": devices}, headers=ADMIN
            )
            assert answer.status_code == 200, answer.text
            assert [c["token"] for c in answer.json()["created"]] == [None, None]
    front_settings = pipeline.model_copy(
        update={
            "mqtt_front": pipeline.mqtt_front.model_copy(
                update={"port": free_port(), "health_port": free_port()}
            )
        }
    )
    front = FrontProcess(front_settings, tmp_path / "front.log")
    front.start()
    try:
        await wait_until(lambda: _front_healthy(front_settings), timeout_s=60, what=front.log_tail)
        for device_id, key in keys.items():
            device = await connected(front_settings, device_id, key)
            try:
                body = json.dumps(reading(device_id, 1)).encode()
                reason = await asyncio.to_thread(device.publish, MQTT_TOPIC.format(device_id), body)
                assert reason == 0, reason
            finally:
                device.close()
        stranger = FrontDevice(front_settings, next(iter(keys)), "not-this-boards-key-0000")
        assert await asyncio.to_thread(stranger.connect) != 0
        stranger.close()
    finally:
        front.stop()


async def _front_healthy(settings: Settings) -> bool:
    url = f"http://127.0.0.1:{settings.mqtt_front.health_port}/health"
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


async def connected(settings: Settings, device_id: str, token: str) -> FrontDevice:
    """A connected client of the device, once the front's registry copy has it."""
    return await once_admitted(
        lambda: FrontDevice(settings, device_id, token), f"the front to know {device_id}"
    )

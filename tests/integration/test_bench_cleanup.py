"""The benchmarks leave no Redis hashes behind: every run adds thousands of devices, and a
dataset that only grows made Redis' snapshots cost seconds of CPU inside later runs."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from bench.context import delete_device_keys
from connectors.redis.keys import RedisKeys
from connectors.redis.wire import RedisPipe
from connectors.redis.writer import DeviceReadings, RedisBatch, RedisWriter, connect_commands
from schemas.settings import Settings


def device_batch(devices: list[str]) -> RedisBatch:
    batch = RedisBatch()
    for device in devices:
        readings = DeviceReadings(device)
        readings.latest = {"event_id": str(uuid.uuid4()), "ts": "2026-11-29T09:00:00Z"}
        readings.status = {"last_seen": "2026-11-29T09:00:00Z", "device_id": device}
        readings.items = [b'{"pir":{"motion_detected":true}}']
        batch.devices[device] = readings
    return batch


async def test_the_sinks_hashes_of_the_run_devices_are_deleted_and_no_others(
    stack_settings: Settings,
) -> None:
    redis = stack_settings.redis.model_copy(update={"prefix": f"t{uuid.uuid4().hex[:10]}"})
    run, other = [f"bench-{n}" for n in range(3)], "kept-device"
    pipe = RedisPipe(redis.host, redis.port, connect_commands(redis.db))
    writer = RedisWriter(pipe, RedisKeys(redis.prefix))
    await writer.write(device_batch([*run, other]))  # the keys exactly as the sink names them
    await writer.close()
    client = aioredis.Redis(host=redis.host, port=redis.port, db=redis.db, decode_responses=True)
    try:
        written = await client.keys(f"{redis.prefix}:*")
        assert len(written) == 8  # latest + status of four devices

        assert await delete_device_keys(redis, run) == 6

        left = sorted(await client.keys(f"{redis.prefix}:*"))
        keys = RedisKeys(redis.prefix)
        assert left == sorted([keys.latest(other), keys.status(other)])
        await client.unlink(*left)
    finally:
        await client.aclose()

"""Helpers of the stream-core tests: settings, Redis, the status topic, Postgres rows."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from connectors.redis.keys import RedisKeys
from schemas.avro_codec import decode, parsed_schema
from schemas.contract_wire import decode_status
from schemas.settings import Settings
from schemas.status import StatusChange
from tests.integration.kafka_tools import read_to_end


def core_settings(settings: Settings, **stream: Any) -> Settings:
    """``settings`` with a fast status timer, the memory store and a Redis prefix of its own."""
    updates = {"table_store": "memory", "status_check_interval_s": 0.5, **stream}
    return settings.model_copy(
        update={
            "stream": settings.stream.model_copy(update=updates),
            "redis": settings.redis.model_copy(update={"prefix": f"t{uuid.uuid4().hex[:10]}"}),
        }
    )


def redis_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis(host=settings.redis.host, port=settings.redis.port, db=settings.redis.db)


async def status_hash(client: aioredis.Redis, settings: Settings, device_id: str) -> dict[str, str]:
    keys = RedisKeys(settings.redis.prefix)
    fields = await client.hgetall(keys.status(device_id))
    return {_text(key): _text(value) for key, value in fields.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def latest_hash(client: aioredis.Redis, settings: Settings, device_id: str) -> dict[str, str]:
    keys = RedisKeys(settings.redis.prefix)
    fields = await client.hgetall(keys.latest(device_id))
    return {_text(key): _text(value) for key, value in fields.items()}


def transitions(settings: Settings) -> dict[str, list[StatusChange]]:
    """Every record now on the device-status topic, per device, in order."""
    by_device: dict[str, list[StatusChange]] = defaultdict(list)
    for value in read_to_end(settings.kafka.bootstrap_servers, settings.topics.device_status):
        change = decode_status(value)
        by_device[change.device_id].append(change)
    return by_device


def transition_problems(changes: list[StatusChange]) -> list[str]:
    """What breaks the status topic's promise in one device's transitions, in published order.

    Delivery is at-least-once, so the promise is per device: every new ``seq`` is the last one
    plus 1 (no gap, no reorder), odd ones online and even ones offline; a ``seq`` published
    again is the same record, stamps included (decision 42), so consumers keep one per
    ``(device_id, seq)``."""
    problems: list[str] = []
    first: dict[int, StatusChange] = {}
    last = 0
    for index, change in enumerate(changes):
        seen = first.get(change.seq)
        if seen is not None:
            if seen != change:
                problems.append(f"#{index}: seq {change.seq} is {change}, and was {seen}")
            continue
        if change.seq != last + 1:
            problems.append(f"#{index}: seq {change.seq} follows seq {last}")
        if change.online != (change.seq % 2 == 1):
            problems.append(f"#{index}: seq {change.seq} with online={change.online}")
        first[change.seq] = change
        last = max(last, change.seq)
    return problems


def curated_records(settings: Settings, devices: list[str]) -> list[dict[str, Any]]:
    """The ``fleet.readings.v1`` records of ``devices`` (Avro, decoded)."""
    wanted = set(devices)
    schema = parsed_schema("readings")
    records = [
        decode(value, schema)
        for value in read_to_end(settings.kafka.bootstrap_servers, settings.topics.readings)
    ]
    return [record for record in records if record["device_id"] in wanted]


async def row_counts(db: asyncpg.Connection, devices: list[str]) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT device_id, count(*) AS n FROM readings WHERE device_id = ANY($1) GROUP BY 1",
        devices,
    )
    return {row["device_id"]: int(row["n"]) for row in rows}

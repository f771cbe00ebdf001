"""The Redis sink's writes: one pipeline per batch, merged per device.

Contract: when :meth:`RedisWriter.write` returns, every command of the batch was executed by the
server (a pipeline without MULTI: on an error part of it may have run; the writes are
idempotent, so the caller simply retries the whole batch).

* latest reading and status fields: ``HSET`` (the batch's newest reading per device);
* status transitions: a Lua script applies a transition and publishes it only if its ``seq`` is
  above the one stored, so a transition published twice upstream takes effect once;
* pub/sub: one message per device per batch on its channel; up to 500 readings a message on
  the all-devices channel;
* legacy list (optional): one ``LPUSH`` of every reading, then ``LTRIM`` to the cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from connectors.redis.keys import VALUE_PREFIX, RedisKeys
from schemas.status import StatusChange

_APPLY_TRANSITION = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if stored >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'device_id', ARGV[2], 'seq', ARGV[1], 'online', ARGV[3],
           'changed_at', ARGV[4], 'reason', ARGV[5])
redis.call('PUBLISH', KEYS[2], ARGV[6])
redis.call('PUBLISH', KEYS[3], ARGV[6])
return 1
"""

_json = msgspec.json.Encoder()


@dataclass
class DeviceReadings:
    """One device's readings of a batch, merged: what the pipeline writes for it."""

    device_id: str
    latest: dict[str, str] = field(default_factory=dict)
    """Fields of the latest hash (the newest reading by ``ts``)."""
    latest_ts: str = ""
    status: dict[str, str] = field(default_factory=dict)
    """Fields of the status hash from readings: last_seen, last_event_id, v:<field> values."""
    items: list[bytes] = field(default_factory=list)
    """Every reading's JSON, in order (pub/sub and the legacy list)."""


@dataclass
class RedisBatch:
    devices: dict[str, DeviceReadings] = field(default_factory=dict)
    changes: list[tuple[StatusChange, bytes]] = field(default_factory=list)
    """Transitions and their encoded records."""


ALL_CHANNEL_CHUNK = 500
"""Readings per message on the all-devices channel."""


class RedisWriter:
    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, legacy_list: str = "", legacy_max: int = 0
    ) -> None:
        self._client = client
        self._keys = keys
        self._legacy_list = legacy_list
        self._legacy_max = legacy_max
        self._transition = client.register_script(_APPLY_TRANSITION)

    async def write(self, batch: RedisBatch) -> None:
        if not batch.devices and not batch.changes:
            return
        keys = self._keys
        pipe = self._client.pipeline(transaction=False)
        every_item: list[bytes] = []
        for device in batch.devices.values():
            device_id = device.device_id
            pipe.hset(keys.latest(device_id), mapping=_mapping(device.latest))
            pipe.hset(keys.status(device_id), mapping=_mapping(device.status))
            pipe.publish(keys.readings_channel(device_id), _feed(device_id, device.items))
            every_item += device.items
        # The all-devices channel gets a few large messages per batch, not one per device:
        # commands, not bytes, are what a pipeline costs here.
        for start in range(0, len(every_item), ALL_CHANNEL_CHUNK):
            pipe.publish(
                keys.readings_all, _feed_all(every_item[start : start + ALL_CHANNEL_CHUNK])
            )
        if self._legacy_list and every_item:
            pipe.lpush(self._legacy_list, *every_item)
            pipe.ltrim(self._legacy_list, 0, self._legacy_max - 1)
        for change, encoded in batch.changes:
            await self._transition(
                keys=[
                    keys.status(change.device_id),
                    keys.status_channel(change.device_id),
                    keys.status_all,
                ],
                args=[
                    change.seq,
                    change.device_id,
                    "1" if change.online else "0",
                    change.changed_at.isoformat(),
                    change.reason,
                    encoded,
                ],
                client=pipe,
            )
        await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()


def _mapping(fields: dict[str, str]) -> Any:
    return fields  # redis-py types mapping values narrowly


def _feed_all(items: Sequence[bytes]) -> bytes:
    return b'{"readings":[' + b",".join(items) + b"]}"


def _feed(device_id: str, items: Sequence[bytes]) -> bytes:
    return b'{"device_id":' + _json.encode(device_id) + b',"readings":[' + b",".join(items) + b"]}"


def value_field(name: str) -> str:
    return VALUE_PREFIX + name

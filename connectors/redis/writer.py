"""The Redis sink's writes: one pipeline per batch, merged per device.

Contract: when :meth:`RedisWriter.write` returns, every command of the batch was executed by the
server (a pipeline without MULTI: on an error part of it may have run; the writes are
idempotent, so the caller simply retries the whole batch).

* latest reading and status fields: ``HSET`` (the batch's newest reading per device);
* status transitions: a Lua script applies a transition and publishes it only if its ``seq`` is
  above the one stored, so a transition published twice upstream takes effect once; it is
  loaded (``SCRIPT LOAD``) on every new connection and called by its SHA1 (``EVALSHA``); a
  server that lost it answers ``NOSCRIPT``, which drops the connection, and the retried batch
  loads it again;
* pub/sub: one message per device per batch on its channel; up to 500 readings a message on
  the all-devices channel;
* legacy list (optional): one ``LPUSH`` of every reading, then ``LTRIM`` to the cap;
* seed feeds (optional, ``connectors.redis.seed_feeds``): the compatibility profiles' commands.

The commands go through :class:`connectors.redis.wire.RedisPipe` (hiredis packing and parsing),
not redis-py's asyncio pipeline, whose pure-Python packing cost more than everything else here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import msgspec

from connectors.redis.compiled import Packed
from connectors.redis.keys import RedisKeys
from connectors.redis.wire import Command, RedisPipe, packed_chunks
from schemas.status import StatusChange

APPLY_TRANSITION = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if stored >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'device_id', ARGV[2], 'seq', ARGV[1], 'online', ARGV[3],
           'changed_at', ARGV[4], 'reason', ARGV[5])
redis.call('PUBLISH', KEYS[2], ARGV[6])
redis.call('PUBLISH', KEYS[3], ARGV[6])
return 1
"""
# Redis names a script by its SHA1: EVALSHA sends the name instead of the source.
APPLY_TRANSITION_SHA = hashlib.sha1(APPLY_TRANSITION.encode(), usedforsecurity=False).hexdigest()

_json = msgspec.json.Encoder()

Field = str | bytes


@dataclass
class DeviceReadings:
    """One device's readings of a batch, merged: what the pipeline writes for it."""

    device_id: str
    latest: dict[str, Field] = field(default_factory=dict)
    """Fields of the latest hash (the newest reading by ``ts``)."""
    latest_ts: str = ""
    status: dict[str, Field] = field(default_factory=dict)
    """Fields of the status hash from readings: last_seen, last_event_id, v:<field> values."""
    items: list[bytes] = field(default_factory=list)
    """Every reading's JSON, in order (pub/sub and the legacy list)."""


@dataclass
class RedisBatch:
    devices: dict[str, DeviceReadings] = field(default_factory=dict)
    changes: list[tuple[StatusChange, bytes]] = field(default_factory=list)
    """Transitions and their encoded records."""
    deleted: list[str] = field(default_factory=list)
    """Devices whose status was deleted (a tombstone on the status topic): their hashes go."""
    packed: Packed | None = None
    """The readings' device commands as the compiled merge packed them (``devices`` is then
    empty): they go first, as the devices' commands would."""

    @property
    def device_count(self) -> int:
        return len(self.devices) + (self.packed.devices if self.packed is not None else 0)


ALL_CHANNEL_CHUNK = 500
"""Readings per message on the all-devices channel."""


def connect_commands(db: int) -> list[Command]:
    """What a new connection of the writer runs first: its database, the transition script."""
    return [("SELECT", db), ("SCRIPT", "LOAD", APPLY_TRANSITION)]


ExtraCommands = Callable[[Sequence[bytes]], list[Command]]
"""More commands for a batch's readings (``connectors.redis.seed_feeds.SeedFeeds``)."""


class RedisWriter:
    def __init__(
        self,
        pipe: RedisPipe,
        keys: RedisKeys,
        legacy_list: str = "",
        legacy_max: int = 0,
        seed_feeds: ExtraCommands | None = None,
    ) -> None:
        self._pipe = pipe
        self._keys = keys
        self._legacy_list = legacy_list
        self._legacy_max = legacy_max
        self._seed_feeds = seed_feeds

    @property
    def takes_packed(self) -> bool:
        """Whether a batch's readings may come packed by the compiled merge: not when the
        legacy list or a seed feed needs every reading as well."""
        return not self._legacy_list and self._seed_feeds is None

    async def write(self, batch: RedisBatch) -> None:
        commands = self.commands(batch)
        packed = batch.packed
        if packed is not None:
            chunks = [packed.data, *packed_chunks(commands)]
            await self._pipe.execute_packed(chunks, packed.commands + len(commands))
        elif commands:
            await self._pipe.execute(commands)

    def commands(self, batch: RedisBatch) -> list[Command]:
        """The batch as commands: three per device, a few per batch, one per transition and
        per deleted device."""
        keys = self._keys
        commands: list[Command] = []
        every_item: list[bytes] = []
        for device in batch.devices.values():
            device_id = device.device_id
            commands.append(_hset(keys.latest(device_id), device.latest))
            commands.append(_hset(keys.status(device_id), device.status))
            commands.append(
                ("PUBLISH", keys.readings_channel(device_id), _feed(device_id, device.items))
            )
            every_item += device.items
        # The all-devices channel gets a few large messages per batch, not one per device:
        # commands, not bytes, are what a pipeline costs here.
        for start in range(0, len(every_item), ALL_CHANNEL_CHUNK):
            chunk = every_item[start : start + ALL_CHANNEL_CHUNK]
            commands.append(("PUBLISH", keys.readings_all, _feed_all(chunk)))
        if self._legacy_list and every_item:
            commands.append(("LPUSH", self._legacy_list, *every_item))
            commands.append(("LTRIM", self._legacy_list, 0, self._legacy_max - 1))
        if self._seed_feeds is not None and every_item:
            commands += self._seed_feeds(every_item)
        commands += [self._transition(change, encoded) for change, encoded in batch.changes]
        # Last: a device deleted in this batch ends without hashes, whatever came before.
        commands += [("DEL", keys.status(d), keys.latest(d)) for d in batch.deleted]
        return commands

    def _transition(self, change: StatusChange, encoded: bytes) -> Command:
        keys = self._keys
        device_id = change.device_id
        return (
            "EVALSHA",
            APPLY_TRANSITION_SHA,
            3,
            keys.status(device_id),
            keys.status_channel(device_id),
            keys.status_all,
            change.seq,
            device_id,
            "1" if change.online else "0",
            change.changed_at.isoformat(),
            change.reason,
            encoded,
        )

    async def close(self) -> None:
        await self._pipe.close()


def _hset(key: str, fields: dict[str, Field]) -> Command:
    return ("HSET", key, *chain.from_iterable(fields.items()))


def _feed_all(items: Sequence[bytes]) -> bytes:
    return b'{"readings":[' + b",".join(items) + b"]}"


def _feed(device_id: str, items: Sequence[bytes]) -> bytes:
    return b'{"device_id":' + _json.encode(device_id) + b',"readings":[' + b",".join(items) + b"]}"

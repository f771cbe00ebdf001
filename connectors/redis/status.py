"""Reading what the Redis sink wrote about a device (``connectors.redis.keys``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis

from connectors.redis.keys import VALUE_PREFIX, RedisKeys


@dataclass(frozen=True)
class DeviceStatusView:
    device_id: str
    online: bool
    last_seen: str | None
    last_event_id: str | None
    last_values: dict[str, Any]
    seq: int
    changed_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "online": self.online,
            "last_seen": self.last_seen,
            "last_event_id": self.last_event_id,
            "last_values": self.last_values,
            "seq": self.seq,
            "changed_at": self.changed_at,
        }


def status_from_hash(device_id: str, fields: Mapping[bytes | str, bytes | str]) -> DeviceStatusView:
    """The status hash as a view; a device never seen is offline with nothing else known."""
    text = {_text(key): _text(value) for key, value in fields.items()}
    values = {
        name[len(VALUE_PREFIX) :]: msgspec.json.decode(value)
        for name, value in text.items()
        if name.startswith(VALUE_PREFIX)
    }
    return DeviceStatusView(
        device_id=device_id,
        online=text.get("online") == "1",
        last_seen=text.get("last_seen"),
        last_event_id=text.get("last_event_id"),
        last_values=values,
        seq=int(text.get("seq", "0")),
        changed_at=text.get("changed_at"),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StatusReader:
    def __init__(self, client: aioredis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    async def read(self, device_id: str) -> DeviceStatusView:
        fields = await self._client.hgetall(self._keys.status(device_id))
        return status_from_hash(device_id, fields)

    async def close(self) -> None:
        await self._client.aclose()

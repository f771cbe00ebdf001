"""``devices.last_seen_at``, kept current by the Postgres sink in one statement per batch.

Only devices the registry has are touched, and the column only ever moves forward, so a
redelivered batch changes nothing. The change is not published on ``fleet.devices.v1``: it is a
fact about traffic, not about the device's registration, and publishing it would make every
reading a registry event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg

_UPDATE = """
UPDATE devices AS d SET last_seen_at = s.seen
FROM unnest($1::text[], $2::timestamptz[]) AS s(device_id, seen)
WHERE d.device_id = s.device_id AND (d.last_seen_at IS NULL OR d.last_seen_at < s.seen)
"""


async def update_last_seen(pool: asyncpg.Pool, seen: Mapping[str, datetime]) -> None:
    """Move ``last_seen_at`` of each device forward to its time in ``seen``."""
    if not seen:
        return
    devices = sorted(seen)  # a fixed order: concurrent sinks lock rows in the same order
    async with pool.acquire() as conn:
        await conn.execute(_UPDATE, devices, [seen[device] for device in devices])

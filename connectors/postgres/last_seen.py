"""``devices.last_seen_at``, kept current by the Postgres sink in one statement per batch.

Only devices the registry has are touched, and the column only ever moves forward, so a
redelivered batch changes nothing. With a ``resolution`` it moves only when it would move by more
than that: a row update per device and batch was most of what Postgres spent per reading when
the sink's batches are short (one device, one reading per 50 ms batch), and a last-seen time
to within a few seconds is what its readers (the admin API, the operator views) need. The
exact time of every reading is in ``readings``; the status table has it per device too.

The change is not published on ``fleet.devices.v1``: it is a fact about traffic, not about the
device's registration, and publishing it would make every reading a registry event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import asyncpg

_UPDATE = """
UPDATE devices AS d SET last_seen_at = s.seen
FROM unnest($1::text[], $2::timestamptz[]) AS s(device_id, seen)
WHERE d.device_id = s.device_id
  AND (d.last_seen_at IS NULL OR d.last_seen_at < s.seen - $3::interval)
"""


async def update_last_seen(
    pool: asyncpg.Pool, seen: Mapping[str, datetime], resolution: timedelta = timedelta(0)
) -> None:
    """Move ``last_seen_at`` of each device forward to its time in ``seen``, if that is more
    than ``resolution`` later than the stored one."""
    if not seen:
        return
    devices = sorted(seen)  # a fixed order: concurrent sinks lock rows in the same order
    async with pool.acquire() as conn:
        await conn.execute(_UPDATE, devices, [seen[device] for device in devices], resolution)

"""Did the acked readings reach Postgres, and how long did they take?

Readings are keyed by (device_id, event_id, ts); the simulator knows the device and event id
of every reading it got an ack for, and asks for those pairs in chunks. The row's
``ingested_at`` (``now()`` of the sink's transaction) minus the wall-clock time the reading was
sent is its send-to-row latency; the simulator and the stack share one machine's clock.
Readings not found are asked for again until all are there or the wait runs out; a lost
connection (Postgres restarting) is opened again within the same wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import asyncpg

from cli.simulator.tally import Acked, StorageCheck
from connectors.postgres.pool import connect
from schemas.settings import PostgresSettings

log = logging.getLogger(__name__)

CHUNK = 20_000
_QUERY = """
SELECT r.device_id, r.event_id::text AS event_id, extract(epoch FROM r.ingested_at) AS at
FROM readings r
JOIN unnest($1::text[], $2::uuid[]) AS k(device_id, event_id)
  ON r.device_id = k.device_id AND r.event_id = k.event_id
"""


async def check_storage(
    postgres: PostgresSettings, acked: Sequence[Acked], *, timeout_s: float, poll_s: float = 1.0
) -> StorageCheck:
    """Look for every reading of ``acked`` until all are found or ``timeout_s`` has passed."""
    pending = {(reading.device_id, reading.event_id): reading.sent_at for reading in acked}
    latencies: list[float] = []
    started = time.monotonic()
    conn: asyncpg.Connection | None = None
    try:
        while True:
            try:
                conn = conn or await connect(postgres)
                await _collect(conn, pending, latencies)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Postgres restarting is not a missing reading: ask again until the wait ends.
                log.warning("storage check: %s; asking again", exc)
                await _closed(conn)
                conn = None
            if not pending or time.monotonic() - started >= timeout_s:
                break
            await asyncio.sleep(poll_s)
    finally:
        await _closed(conn)
    waited = time.monotonic() - started
    return StorageCheck(len(acked), len(acked) - len(pending), waited, latencies)


async def _closed(conn: asyncpg.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.close(timeout=5)


async def _collect(
    conn: asyncpg.Connection,
    pending: dict[tuple[str, str], float],
    latencies: list[float],
) -> None:
    """Move the pending readings found in Postgres out of ``pending``, noting their latency."""
    keys = list(pending)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        rows = await conn.fetch(_QUERY, [key[0] for key in chunk], [key[1] for key in chunk])
        for row in rows:
            sent_at = pending.pop((row["device_id"], row["event_id"]), None)
            if sent_at is not None:
                latencies.append(float(row["at"]) - sent_at)

"""What every scenario shares: the stack's pids, a scratch folder, progress output, and waiting
until readings are rows (or dead letters) without loading Postgres more than needed."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.kafka import Watermarks
from bench.procs import BenchError, Started, stack_pids
from connectors.postgres.pool import connect
from connectors.redis.clients import async_client
from schemas.settings import RedisSettings, Settings

Progress = Callable[[str], None]
POLL_S = 0.25
REPORT_EVERY_S = 5.0


@dataclass
class Context:
    base: Settings
    workdir: Path
    progress: Progress = print
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Parts of a step that failed while the rest of it went on (reported, exit status 1)."""

    @property
    def stack(self) -> dict[str, int]:
        """Pids of the shared stack (kafka, postgres = the postmaster, redis), read afresh: other
        work may restart a service between two measurements."""
        return stack_pids(self.base)

    def wait_for_stack(self, timeout_s: float = 180.0) -> dict[str, int]:
        """The stack's pids once every service is healthy (others' tests may restart one)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return stack_pids(self.base)
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                self.progress("waiting for the shared stack to be healthy again…")
                time.sleep(5)  # the stack is someone else's to restart; poll slowly


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` cut at ``limit`` characters, for RESULTS.md (the
    whole message, with log tails, goes to the progress output)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Stored:
    """When the readings of a run were all accounted for (``time.time()`` clock)."""

    rows: int
    dead: int
    first_row_at: float
    done_at: float
    complete: bool = True
    """False when the wait ran out of time first (``partial_ok``): the counts are partial."""

    @property
    def handled(self) -> int:
        """Readings accounted for: rows plus dead letters."""
        return self.rows + self.dead


async def count_rows(db: asyncpg.Connection, devices: Sequence[str]) -> int:
    found = await db.fetchval("SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices)
    return int(found)


async def wait_stored(
    db: asyncpg.Connection,
    watermarks: Watermarks,
    *,
    devices: Sequence[str],
    expected: int,
    deadletter_topic: str,
    valid_topic: str | None,
    timeout_s: float,
    progress: Progress,
    alive: Callable[[], object] = lambda: None,
    partial_ok: bool = False,
) -> Stored:
    """Wait until rows of ``devices`` + dead letters on ``deadletter_topic`` reach ``expected``.

    Counting rows scans the run's rows and costs Postgres CPU, which the run measures. So with
    a ``valid_topic`` (one record per valid reading, cheap to read from its watermarks) rows are
    counted only once the topic and the dead letters show that validation is complete; then,
    like without one, at most every 4x the duration of the last count. The time of the first
    row is Postgres' own ``min(ingested_at)``. ``alive`` is called on every poll and raises when
    a process the run depends on died. At ``timeout_s`` it raises TimeoutError, or with
    ``partial_ok`` returns what was stored by then (``complete`` False): a slow system still
    gets a rate, and the run stays bounded.
    """
    deadline = time.monotonic() + timeout_s
    rows = dead = 0
    next_count = 0.0 if valid_topic is None else math.inf
    next_report = time.monotonic() + REPORT_EVERY_S
    while True:
        alive()
        dead = watermarks.count(deadletter_topic)
        validated = watermarks.count(valid_topic) if valid_topic else 0
        now = time.monotonic()
        if valid_topic and validated + dead >= expected:
            next_count = min(next_count, now)
        if now >= next_count:
            rows = await count_rows(db, devices)
            if rows + dead >= expected:
                break
            next_count = now + max(POLL_S, 4 * (time.monotonic() - now))
        if now >= next_report:
            shown = f"validated {validated:,}" if valid_topic else f"rows {rows:,}"
            progress(f"  {shown} + dead letters {dead:,} of {expected:,}")
            next_report = now + REPORT_EVERY_S
        if now > deadline:
            if partial_ok:
                rows = await count_rows(db, devices)
                break
            counted = f"{rows:,} rows" if next_count < math.inf else "rows not counted yet"
            raise TimeoutError(
                f"after {timeout_s:.0f} s: {validated:,} validated, {counted}, {dead:,} dead "
                f"letters of {expected:,}"
            )
        await asyncio.sleep(POLL_S)
    done_at = time.time()
    first = await db.fetchval(
        "SELECT extract(epoch FROM min(ingested_at)) FROM readings WHERE device_id = ANY($1)",
        devices,
    )
    complete = rows + dead >= expected
    return Stored(rows, dead, float(first) if first is not None else done_at, done_at, complete)


async def wait_run_stored(
    ctx: Context,
    settings: Settings,
    devices: Sequence[str],
    expected: int,
    *,
    timeout_s: float,
    watched: Sequence[Started] = (),
    curated: bool = True,
    partial_ok: bool = True,
) -> Stored:
    """:func:`wait_stored` on connections of its own, for a run under ``settings``: rows of
    ``devices`` plus the run's dead letters, validation followed on its curated topic (unless
    not ``curated``: then rows are counted from the start). Every poll checks that the
    ``watched`` processes still run."""

    def alive() -> None:
        for process in watched:
            process.check_alive()

    db = await connect(settings.postgres)
    watermarks = Watermarks(settings.kafka.bootstrap_servers)
    try:
        return await wait_stored(
            db,
            watermarks,
            devices=devices,
            expected=expected,
            deadletter_topic=settings.topics.deadletter,
            valid_topic=settings.topics.readings if curated else None,
            timeout_s=timeout_s,
            progress=ctx.progress,
            alive=alive,
            partial_ok=partial_ok,
        )
    finally:
        watermarks.close()
        await db.close()


async def delete_run(settings: Settings, devices: Sequence[str]) -> None:
    """:func:`delete_run_data` on a connection of its own."""
    db = await connect(settings.postgres)
    try:
        await delete_run_data(db, settings.redis, devices)
    finally:
        await db.close()


async def delete_run_data(
    db: asyncpg.Connection, redis: RedisSettings, devices: Sequence[str]
) -> None:
    """Delete what a run left for ``devices``: rows, rollups and Redis hashes.

    Then vacuum: the next step must not write into a table holding a million dead rows
    (Postgres' CPU per row rose by ~20 % until autovacuum came by, which made the next step's
    result depend on its timing), and rollups of earlier runs had piled up to two million rows.
    The Redis hashes (two per device) had piled up to 750,000 keys over the runs: every snapshot
    and append-only rewrite then took Redis 4-5 s of a core, a few seconds after each step ended,
    into whatever step ran next (decision 30)."""
    await db.execute("DELETE FROM readings WHERE device_id = ANY($1)", devices)
    await db.execute("DELETE FROM readings_1m WHERE device_id = ANY($1)", devices)
    await db.execute("VACUUM (ANALYZE) readings, readings_1m")
    await delete_device_keys(redis, devices)


async def delete_device_keys(redis: RedisSettings, devices: Sequence[str]) -> int:
    """Unlink the Redis sink's hashes of ``devices``; returns how many existed."""
    from connectors.redis.keys import RedisKeys

    keys = RedisKeys(redis.prefix)
    names = [key for device in devices for key in (keys.latest(device), keys.status(device))]
    client = async_client(redis)
    try:
        removed = 0
        for start in range(0, len(names), _UNLINK_CHUNK):
            removed += await client.unlink(*names[start : start + _UNLINK_CHUNK])
    finally:
        await client.aclose()
    return removed


_UNLINK_CHUNK = 1_000


@contextmanager
def fresh_topics(settings: Settings, extra: Sequence[str] = ()) -> Iterator[None]:
    """The project's topics under the isolated names of ``settings`` (plus ``extra`` event
    topics), created now and deleted on exit."""
    from connectors.kafka.admin import TopicSpec, delete_app_topics, delete_topics, ensure_topics
    from streams.topology import topic_specs

    kafka = settings.kafka
    specs = topic_specs(settings) + [
        TopicSpec(name, kafka.partitions, kafka.replication_factor) for name in extra
    ]
    ensure_topics(kafka.bootstrap_servers, specs)
    try:
        yield
    finally:
        delete_topics(kafka.bootstrap_servers, [spec.name for spec in specs])
        delete_app_topics(kafka.bootstrap_servers, settings.worker.app_id)

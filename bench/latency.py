"""Scenario ``latency``: a steady open-loop load through API and worker; request → row.

An asyncio client sends batches of BATCH readings at a fixed rate for a fixed time, on a
schedule that does not wait for answers (open loop, so a slow answer cannot hide latency by
delaying the next request), with requests encoded beforehand (``bench.http_load``). Each
reading carries its request's scheduled send time in ``metadata.sent_at`` (epoch seconds); once
every reading is a row, Postgres computes ``ingested_at - sent_at`` percentiles.
``ingested_at`` defaults to ``now()``, the start of the sink's transaction, so the figure leaves
out the transaction's own duration (its COPY, a few ms to tens of ms): request → row visible is
that much longer.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec

from bench.context import Context, Stored, delete_run, fresh_topics, wait_stored
from bench.cpu import CpuMeter
from bench.data import new_fleet, readings
from bench.http_load import HttpError, LeanClient, post_request
from bench.ingest import wait_ready
from bench.kafka import Watermarks
from bench.procs import Started, bench_settings, services
from bench.stats import Percentiles, Result, summarize
from connectors.postgres.pool import connect
from schemas.settings import Settings

BATCH = 50
STORE_LIMIT_S = 120.0
"""How long after the load the rows may take; what is missing then is reported."""
DEVICES = 1000
_encoder = msgspec.json.Encoder()


@dataclass
class Sent:
    """What the client saw: answers by status and request latencies (ms, from schedule)."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)


def schedule(rate: float, seconds: float, batch: int) -> list[float]:
    """Send offsets (s from the start) of the requests: ``rate`` readings/s in batches."""
    interval = batch / rate
    return [n * interval for n in range(int(seconds / interval))]


async def send_all(
    url: str, bodies: list[list[dict[str, Any]]], offsets: list[float], sent: Sent
) -> None:
    """Send ``bodies`` on the open-loop schedule; each reading's ``metadata.sent_at`` is its
    request's scheduled time. Requests are encoded before the clock starts, and go out through
    :class:`~bench.http_load.LeanClient`, so the client takes little of the CPU it measures."""
    address = httpx.URL(url)
    host, port = address.host, address.port or 80
    start = time.time() + 0.5 + len(bodies) * 20e-6  # time to encode every request first
    requests = []
    for body, offset in zip(bodies, offsets, strict=True):
        for item in body:
            item["metadata"] = {"sent_at": start + offset}
        requests.append(post_request(host, port, address.path, _encoder.encode(body)))
    client = LeanClient(host, port)

    async def one(request: bytes, due: float) -> None:
        try:
            status = await client.send(request)
        except HttpError:
            sent.errors += 1
            return
        sent.latencies_ms.append((time.time() - due) * 1000)
        sent.statuses[status] = sent.statuses.get(status, 0) + 1

    tasks = []
    try:
        for request, offset in zip(requests, offsets, strict=True):
            due = start + offset
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the open-loop schedule, not a wait for a condition
            tasks.append(asyncio.create_task(one(request, due)))
        await asyncio.gather(*tasks)
    finally:
        await client.close()


async def row_latency(db: asyncpg.Connection, devices: list[str]) -> Percentiles:
    """Postgres' percentiles of ingested_at - metadata.sent_at, in ms."""
    cuts = await db.fetchval(
        """
        SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
            ORDER BY (extract(epoch FROM ingested_at) - (metadata->>'sent_at')::float8) * 1000)
        FROM readings WHERE device_id = ANY($1)
        """,
        devices,
    )
    return Percentiles(float(cuts[0]), float(cuts[1]), float(cuts[2]))


TIMELINE_STEP_S = 5
Timeline = list[tuple[int, float, float]]


async def latency_timeline(
    db: asyncpg.Connection, devices: list[str], step_s: int = TIMELINE_STEP_S
) -> Timeline:
    """p50 and p99 (ms) of the readings sent in each ``step_s`` of the run, by send time:
    a start-up transient or a stall shows here, where the overall percentiles hide it."""
    rows = await db.fetch(
        """
        WITH lat AS (
            SELECT (metadata->>'sent_at')::float8 AS sent,
                   (extract(epoch FROM ingested_at) - (metadata->>'sent_at')::float8) * 1000 AS ms
            FROM readings WHERE device_id = ANY($1))
        SELECT floor((sent - min(sent) OVER ()) / $2) * $2 AS since, ms FROM lat
        """,
        devices,
        step_s,
    )
    by_step: dict[int, list[float]] = {}
    for row in rows:
        by_step.setdefault(int(row["since"]), []).append(float(row["ms"]))
    timeline = []
    for since, values in sorted(by_step.items()):
        cuts = summarize(values)
        timeline.append((since, cuts.p50, cuts.p99))
    return timeline


def run(ctx: Context, *, rate: float = 5000, seconds: float = 30, workers: int = 1) -> Result:
    settings = bench_settings(ctx.base, ctx.workdir)
    fleet = new_fleet(DEVICES)
    offsets = schedule(rate, seconds, BATCH)
    items = list(readings(fleet, len(offsets) * BATCH, invalid_every=None))
    bodies = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    warm = new_fleet(1).devices
    try:
        with (
            fresh_topics(settings),
            services(settings, ctx.workdir, ["api"] + ["worker"] * workers) as started,
        ):
            outcome = asyncio.run(
                _measure(ctx, settings, started, (fleet.devices, warm), bodies, offsets)
            )
    finally:  # after the worker stopped; also when the step failed: no rows left behind
        asyncio.run(delete_run(settings, [*fleet.devices, *warm]))
    sent, cpu, (latency, timeline), warm_up, stored = outcome
    total = len(items)
    request = summarize(sent.latencies_ms) if sent.latencies_ms else Percentiles(0, 0, 0)
    notes = [
        f"{rate:,.0f} readings/s in batches of {BATCH} for {seconds:.0f} s, open loop "
        f"(prepared requests, bench/http_load); request latency from schedule p50/p99 "
        f"{request.p50:.1f}/{request.p99:.1f} ms; answers {sent.statuses}, "
        f"{sent.errors} transport errors",
        "latency = ingested_at (start of the sink's transaction) - scheduled send time",
        f"warm-up: one reading request → row before the clock ({warm_up:.1f} s incl. start)",
        f"p50/p99 ms of the readings sent in each {TIMELINE_STEP_S} s: "
        + " · ".join(f"{since} s {p50:.0f}/{p99:.0f}" for since, p50, p99 in timeline),
    ]
    if not stored.complete:
        notes.append(
            f"**incomplete**: {stored.rows:,} of {sent.accepted * BATCH:,} accepted readings were "
            f"rows {STORE_LIMIT_S:.0f} s after the load; the percentiles leave out the missing "
            "(slowest) ones"
        )
    result = Result(
        "latency",
        f"fleetstream API + {workers} worker{'s' if workers > 1 else ''}",
        total,
        seconds,
        latency=latency,
        cpu_s=cpu,
        notes=notes,
    )
    ctx.progress(f"latency: p50/p95/p99 {latency.p50:.0f}/{latency.p95:.0f}/{latency.p99:.0f} ms")
    return result


async def _measure(
    ctx: Context,
    settings: Settings,
    started: list[Started],
    fleets: tuple[list[str], list[str]],
    bodies: list[list[dict[str, Any]]],
    offsets: list[float],
) -> tuple[Sent, dict[str, float], tuple[Percentiles, Timeline], float, Stored]:
    devices, warm = fleets
    base = f"http://{settings.api.host}:{settings.api.port}"
    begun = time.monotonic()
    await wait_ready(base, started[0])
    db = await connect(settings.postgres)
    watermarks = Watermarks(settings.kafka.bootstrap_servers)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            warm_body = next(readings(new_fleet(1, run="warm"), 1, invalid_every=None))
            warm_body["device_id"] = warm[0]
            (await client.post(f"{base}/v1/readings", json=warm_body)).raise_for_status()
        await wait_stored(
            db,
            watermarks,
            devices=warm,
            expected=1,
            deadletter_topic=settings.topics.deadletter,
            valid_topic=None,
            timeout_s=120,
            progress=lambda _m: None,
        )
        warm_up = time.monotonic() - begun
        ctx.progress(f"latency: pipeline warm ({warm_up:.1f} s); sending for the fixed time…")
        meter = CpuMeter(
            {
                "api": [started[0].pid],
                "worker": [s.pid for s in started[1:]],
                "kafka": [ctx.stack["kafka"]],
                "postgres": [ctx.stack["postgres"]],
                "redis": [ctx.stack["redis"]],
            }
        )
        own_before = _own_cpu()
        meter.start()
        sent = Sent()
        await send_all(f"{base}/v1/readings", bodies, offsets, sent)
        expected = sent.accepted * len(bodies[0])
        stored = await wait_stored(
            db,
            watermarks,
            devices=devices,
            expected=expected,
            deadletter_topic=settings.topics.deadletter,
            valid_topic=settings.topics.readings,
            timeout_s=STORE_LIMIT_S,
            progress=ctx.progress,
            partial_ok=True,
        )
        cpu = {**meter.stop(), "load": _own_cpu() - own_before}
        latency = (await row_latency(db, devices), await latency_timeline(db, devices))
    finally:
        watermarks.close()
        await db.close()
    return sent, cpu, latency, warm_up, stored


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

"""Scenario ``pipeline``: preloaded raw envelopes → the worker(s) → rows in Postgres.

Fresh topics; N readings of the seed mix (~1 % invalid) are produced as partition-aligned
envelopes with confluent-kafka (not timed). Then the worker(s) start and the clock runs until
every reading is a row or a dead letter. Two rates: from starting the worker processes (start-up
and group join included), and steady (from the first row Postgres stored to the last). CPU of the
workers, the broker, Postgres and Redis is read from /proc over the whole run.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bench.context import Context, delete_run, fresh_topics, wait_run_stored
from bench.cpu import CpuMeter
from bench.data import encoded_items, group_envelopes, invalid_count, new_fleet, readings
from bench.flows_load import publish_flows, wait_committed
from bench.kafka import produce_envelopes
from bench.procs import Started, bench_settings, services
from bench.profile import RATE, Sampler, describe
from bench.stats import Result

DEVICES = 2000
ENVELOPE_ITEMS = 100
TIME_LIMIT_S = 240.0
"""A worker that needs longer gets the rate of what it stored by then (marked incomplete)."""
PROFILE_DELAY_S = 4.0
PROFILE_S = 10.0


def run(
    ctx: Context,
    *,
    count: int = 1_000_000,
    workers: int = 1,
    profile_with: str | None = None,
    time_limit_s: float = TIME_LIMIT_S,
    flows: int = 0,
) -> Result:
    """Preload ``count`` readings, run ``workers`` workers until all are stored; with
    ``profile_with`` (py-spy), sample the first worker for PROFILE_S after PROFILE_DELAY_S."""
    settings = bench_settings(ctx.base, ctx.workdir)
    fleet = new_fleet(DEVICES)
    invalid = invalid_count(count, len(fleet.devices))
    with fresh_topics(settings):
        ctx.progress(f"pipeline: preloading {count:,} readings as envelopes (not timed)…")
        started = time.perf_counter()
        items = encoded_items(readings(fleet, count), datetime.now(UTC))
        envelopes = group_envelopes(items, settings.kafka.partitions, max_items=ENVELOPE_ITEMS)
        records, _ = produce_envelopes(
            settings.kafka.bootstrap_servers, settings.topics.raw, envelopes, ctx.progress
        )
        ctx.progress(
            f"pipeline: {count:,} readings in {records:,} envelopes, "
            f"{time.perf_counter() - started:.1f} s; starting {workers} worker(s)"
        )
        if flows:  # bench/flows_load.py: N flows on every device, done when they acked too
            publish_flows(settings, flows)
        start_at = time.time()
        try:
            with services(settings, ctx.workdir, ["worker"] * workers) as started_workers:
                meter = _meter(ctx, started_workers)
                meter.start()
                sampler = None
                if profile_with:
                    out = ctx.workdir / "worker.pyspy.txt"
                    pid = started_workers[0].pid
                    sampler = Sampler(
                        profile_with, pid, out, delay_s=PROFILE_DELAY_S, seconds=PROFILE_S
                    )
                    sampler.start()
                stored = asyncio.run(
                    wait_run_stored(
                        ctx,
                        settings,
                        fleet.devices,
                        count,
                        timeout_s=time_limit_s,
                        watched=started_workers,
                    )
                )
                flows_done = wait_committed(settings, time_limit_s) if flows else None
                cpu = meter.stop()
                profiled = sampler.finish() if sampler else None
        finally:  # also when a step fails or is interrupted: no rows left behind
            asyncio.run(delete_run(settings, fleet.devices))
    done_at = max(stored.done_at, flows_done or 0.0)
    seconds = done_at - start_at
    steady = stored.handled / (done_at - stored.first_row_at)
    notes = [
        f"{records:,} envelopes of ≤ {ENVELOPE_ITEMS} readings, {DEVICES:,} devices, "
        f"{settings.kafka.partitions} partitions; {stored.rows:,} rows + {stored.dead:,} dead "
        f"letters (expected {count - invalid:,} + {invalid:,})"
    ]
    if not stored.complete:
        notes.append(
            f"**incomplete**: {stored.handled:,} of {count:,} readings stored or dead-lettered "
            f"when the time limit ({time_limit_s:.0f} s) ran out; rates are of those"
        )
    elif stored.rows != count - invalid or stored.dead != invalid:
        notes.append("**counts differ from the expected ones**")
    if profiled is not None:
        notes += describe(profiled, PROFILE_S, RATE)
    result = Result(
        "pipeline",
        f"fleetstream, {workers} worker{'s' if workers > 1 else ''}"
        + (f", {flows} flows per device" if flows else ""),
        stored.handled,
        seconds,
        steady_rate=steady,
        cpu_s=cpu,
        notes=notes,
    )
    ctx.progress(
        f"pipeline, {workers} worker(s): {result.rate:,.0f} readings/s incl. start, "
        f"{steady:,.0f}/s steady"
    )
    return result


def _meter(ctx: Context, workers: list[Started]) -> CpuMeter:
    return CpuMeter(
        {
            "worker": [w.pid for w in workers],
            "kafka": [ctx.stack["kafka"]],
            "postgres": [ctx.stack["postgres"]],
            "redis": [ctx.stack["redis"]],
        }
    )

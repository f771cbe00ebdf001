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
import uuid
from datetime import UTC, datetime

from bench.context import Context, Stored, delete_run, fresh_topics, wait_run_stored
from bench.cpu import CpuMeter
from bench.data import Fleet, encoded_items, group_envelopes, invalid_count, new_fleet, readings
from bench.flows_load import publish_flows, wait_committed
from bench.kafka import produce_envelopes
from bench.procs import BenchError, Started, bench_settings, services, start, stop
from bench.profile import RATE, Sampler, describe
from bench.stats import Result
from schemas.settings import Settings

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


SAME_JOB_PREFIX = "same job: "
"""System names of :func:`run_same_job` (the targets find its two rows by it)."""


def run_same_job(
    ctx: Context, *, count: int = 200_000, time_limit_s: float = TIME_LIMIT_S
) -> list[Result]:
    """One worker, then Quix Streams doing the same job (``bench.baselines.quix_same_job``), on
    the same preloaded envelopes with the same registered fleet; rows, rollups and Redis hashes
    are deleted between the two, each reads the raw topic in a consumer group of its own.

    Both are timed alike: from starting the process until every reading is a row or a dead
    letter (followed on each one's own readings and dead-letter topics), steady from the first
    row Postgres stored."""
    from bench.baselines.suite import QUIX_VERSION, REPO, ensure_quix_venv

    python = ensure_quix_venv(ctx)
    settings = bench_settings(ctx.base, ctx.workdir)
    fleet = new_fleet(DEVICES)
    invalid = invalid_count(count, len(fleet.devices))
    run_id = uuid.uuid4().hex[:10]
    topics = {name: f"bench.quix-same-{name}.{run_id}" for name in ("out", "dead", "status")}
    group = f"bench-quix-same-{run_id}"
    results: list[Result] = []
    with fresh_topics(settings, extra=list(topics.values())):
        _register(settings, fleet)
        records = _preload(ctx, settings, fleet, count)
        common = (
            f"{records:,} envelopes of ≤ {ENVELOPE_ITEMS} readings, {DEVICES:,} registered "
            f"devices, {settings.kafka.partitions} partitions"
        )
        start_at = time.time()
        try:
            with services(settings, ctx.workdir, ["worker"]) as workers:
                meter = _meter(ctx, workers)
                meter.start()
                stored = asyncio.run(
                    wait_run_stored(
                        ctx, settings, fleet.devices, count, timeout_s=time_limit_s, watched=workers
                    )
                )
                cpu = meter.stop()
        finally:
            asyncio.run(delete_run(settings, fleet.devices))
        results.append(
            _same_job_result(
                "fleetstream, 1 worker", stored, start_at, cpu, count, invalid, [common]
            )
        )
        ctx.progress(f"same job: Quix Streams on {count:,} readings…")
        quix_settings = settings.model_copy(
            update={
                "topics": settings.topics.model_copy(
                    update={"readings": topics["out"], "deadletter": topics["dead"]}
                )
            }
        )
        argv = [
            str(python),
            "-m",
            "bench.baselines.quix_same_job",
            "--bootstrap",
            settings.kafka.bootstrap_servers,
            "--raw",
            settings.topics.raw,
            "--devices",
            settings.topics.devices,
            "--readings",
            topics["out"],
            "--deadletter",
            topics["dead"],
            "--status",
            topics["status"],
            "--group",
            group,
            "--dsn",
            settings.postgres.dsn(),
            "--redis-url",
            f"redis://{settings.redis.host}:{settings.redis.port}/{settings.redis.db}",
            "--redis-prefix",
            settings.redis.prefix,
            "--state-dir",
            str(ctx.workdir / f"quix-state-{run_id}"),
        ]
        start_at = time.time()
        quix = start("quix-same-job", argv, ctx.workdir, {"PYTHONPATH": str(REPO)})
        try:
            meter = CpuMeter(
                {
                    "app": [quix.pid],
                    "kafka": [ctx.stack["kafka"]],
                    "postgres": [ctx.stack["postgres"]],
                    "redis": [ctx.stack["redis"]],
                }
            )
            meter.start()
            stored = asyncio.run(
                wait_run_stored(
                    ctx, quix_settings, fleet.devices, count, timeout_s=time_limit_s, watched=[quix]
                )
            )
            cpu = meter.stop()
        finally:
            stop([quix])
            asyncio.run(delete_run(settings, fleet.devices))
            _delete_topics_of(settings, group)
        results.append(
            _same_job_result(
                f"Quix Streams {QUIX_VERSION}", stored, start_at, cpu, count, invalid, [common]
            )
        )
    results[-1].notes += QUIX_SAME_JOB_NOTES
    for result in results:
        ctx.progress(
            f"{result.system}: {result.rate:,.0f} readings/s incl. start, "
            f"{result.best_rate:,.0f}/s steady"
        )
    return results


QUIX_SAME_JOB_NOTES = [
    "the same job in Quix's terms (bench/baselines/quix_same_job.py): one stateful apply per "
    "envelope (decode, the worker's validation and enrichment from `schemas` and "
    "`agents.enrichment`, each device's status and 1-minute rollups in Quix's State, RocksDB "
    "with changelog topics), branches to the readings, dead-letter and status topics, and two "
    "sinks per checkpoint (5 s, Quix's default): one COPY of the rows in our sink's CSV form "
    "plus the rollups upserted into readings_1m, and one Redis pipeline of the latest and "
    "status hashes and pub/sub messages",
    "where it does less than the worker: readings go out as JSON, not Avro through the schema "
    "registry; no curated topic between validation and the sinks (the worker's three consumers "
    "read one); rollups go straight to Postgres, not through their topic and sink group; no "
    "Lua script for transitions, no offline timer, no drop of repeats by raw position, no "
    "bounds on a state row's windows; Redis is written per checkpoint (5 s) where the worker "
    "writes every 0.5 s",
    "its first rows reach Postgres at its first checkpoint, 5 s into its work: the steady rate "
    "(first row → last) counts the readings of those 5 s in a window without them, a few per "
    "cent in Quix's favour; CPU per reading has no such bias",
]


def _same_job_result(
    system: str,
    stored: Stored,
    start_at: float,
    cpu: dict[str, float],
    count: int,
    invalid: int,
    notes: list[str],
) -> Result:
    notes = [
        *notes,
        f"{stored.rows:,} rows + {stored.dead:,} dead letters "
        f"(expected {count - invalid:,} + {invalid:,})",
    ]
    if not stored.complete:
        notes.append(f"**incomplete**: {stored.handled:,} of {count:,} when the time ran out")
    return Result(
        "pipeline",
        SAME_JOB_PREFIX + system,
        stored.handled,
        stored.done_at - start_at,
        steady_rate=stored.handled / (stored.done_at - stored.first_row_at),
        cpu_s=cpu,
        notes=notes,
    )


def _preload(ctx: Context, settings: Settings, fleet: Fleet, count: int) -> int:
    """``count`` readings of ``fleet`` as partition-aligned envelopes on the raw topic (not
    timed); the number of records."""
    ctx.progress(f"pipeline: preloading {count:,} readings as envelopes (not timed)…")
    items = encoded_items(readings(fleet, count), datetime.now(UTC))
    envelopes = group_envelopes(items, settings.kafka.partitions, max_items=ENVELOPE_ITEMS)
    records, _ = produce_envelopes(
        settings.kafka.bootstrap_servers, settings.topics.raw, envelopes, ctx.progress
    )
    return records


def _register(settings: Settings, fleet: Fleet) -> None:
    """The fleet's registry entries on the run's devices topic, as the registry publishes them
    (the worker and the Quix peer both read them from there)."""
    from bench.fleet_sim import fleet_devices
    from bench.kafka import fast_producer
    from schemas.devices import encode_device

    producer = fast_producer(settings.kafka.bootstrap_servers)
    for device in fleet_devices(fleet, datetime.now(UTC)):
        producer.produce(settings.topics.devices, encode_device(device), device.device_id)
    if producer.flush(60):
        raise BenchError("the registry records were not all acked in 60 s")


def _delete_topics_of(settings: Settings, group: str) -> None:
    """The topics Quix made for consumer group ``group`` (its state's changelogs)."""
    from confluent_kafka.admin import AdminClient

    from connectors.kafka.admin import delete_topics
    from connectors.kafka.security import client_config

    bootstrap = settings.kafka.bootstrap_servers
    admin = AdminClient(client_config(bootstrap))
    names = [name for name in admin.list_topics(timeout=30).topics if group in name]
    if names:
        delete_topics(bootstrap, names)

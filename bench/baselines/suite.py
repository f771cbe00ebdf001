"""Running the per-message baselines on the same kind of readings: Faust per message (previous
main), Quix Streams, and the seed 001 design.

One preload (not timed) serves all three: N readings of the seed mix, one RawEvent per Kafka
message keyed by device_id on its murmur2 partition, as the previous main's edge produced them.
Each baseline reads it with its own consumer group; rows of one are deleted before the next
runs, so nobody meets ``ON CONFLICT`` shortcuts. Every rate counts from starting the baseline's
process until every reading is a row, a dead letter or rejected; the steady rate starts at the
first stored row (or the first message, for the self-timed ones).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.context import Context, delete_run, fresh_topics, one_line, wait_run_stored
from bench.cpu import CpuMeter, wait_with_cpu
from bench.data import Fleet, encoded_items, invalid_count, new_fleet, readings
from bench.kafka import produce_per_message
from bench.procs import BenchError, bench_settings, start, stop
from bench.stats import Result
from connectors.postgres.pool import connect
from connectors.redis.clients import sync_client
from schemas.settings import Settings
from tests.support import settings_env

DEVICES = 2000
QUIX_VERSION = "3.28.1"
QUIX_VENV = Path(__file__).resolve().parents[1] / ".quix-venv"
QUIX_VENV_REVISION = 2
"""Raised when the packages of the Quix venv change (2: redis, for the same-job peer)."""
REPO = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 240.0


def _stack_meter(ctx: Context, own: dict[str, list[int]]) -> CpuMeter:
    return CpuMeter(
        {
            **own,
            "kafka": [ctx.stack["kafka"]],
            "postgres": [ctx.stack["postgres"]],
            "redis": [ctx.stack["redis"]],
        }
    )


def run(
    ctx: Context, *, faust: int = 200_000, quix: int = 200_000, seed001: int = 20_000
) -> list[Result]:
    """Preload max(counts) readings once; run each baseline on the first ``count`` of them."""
    settings = bench_settings(ctx.base, ctx.workdir)
    fleet = new_fleet(DEVICES)
    total = max(faust, quix, seed001)
    quix_topics = [f"bench.quix-{name}.{uuid.uuid4().hex[:10]}" for name in ("out", "dead")]
    results: list[Result] = []
    with fresh_topics(settings, extra=quix_topics):
        ctx.progress(f"baselines: preloading {total:,} single-reading records (not timed)…")
        items = encoded_items(readings(fleet, total), datetime.now(UTC))
        produce_per_message(
            settings.kafka.bootstrap_servers,
            settings.topics.raw,
            items,
            settings.kafka.partitions,
            ctx.progress,
        )
        runs: list[tuple[str, int, Callable[[], Result]]] = [
            ("Faust per-message", faust, lambda: run_faust(ctx, settings, fleet, faust, total)),
            ("Quix Streams", quix, lambda: run_quix(ctx, settings, fleet, quix, quix_topics)),
            ("seed 001", seed001, lambda: run_seed001(ctx, settings, seed001)),
        ]
        for name, count, baseline in runs:
            if not count:
                continue
            try:
                results.append(baseline())
            except Exception as exc:  # noqa: BLE001 - the other baselines still run
                ctx.progress(f"baselines: {name} FAILED: {exc}")
                ctx.failures.append(f"**baseline {name} failed**: {one_line(exc)}")
    return results


def run_faust(ctx: Context, settings: Settings, fleet: Fleet, count: int, total: int) -> Result:
    """The previous main's per-message Faust worker; it reads the whole preload (``total``)."""
    ctx.progress(f"baselines: Faust per-message on {total:,} readings…")
    env = {**settings_env(settings), "FLEET_WORKER__DATADIR": str(ctx.workdir / "faust-pm")}
    argv = [sys.executable, "-m", "bench.baselines.faust_per_message"]
    start_at = time.time()
    worker = start("faust-per-message", argv, ctx.workdir, env)
    try:
        meter = _stack_meter(ctx, {"app": [worker.pid]})
        meter.start()
        stored = asyncio.run(
            wait_run_stored(
                ctx, settings, fleet.devices, total, timeout_s=TIME_LIMIT_S, watched=[worker]
            )
        )
        cpu = meter.stop()
    finally:
        stop([worker])
        asyncio.run(delete_run(settings, fleet.devices))
    invalid = invalid_count(total, len(fleet.devices))
    return Result(
        "baselines",
        "Faust per-message (previous main's design)",
        stored.handled,
        stored.done_at - start_at,
        steady_rate=stored.handled / (stored.done_at - stored.first_row_at),
        cpu_s=cpu,
        notes=[
            f"validate → curated topic → COPY sink; {stored.rows:,} rows + {stored.dead:,} dead "
            f"letters (expected {total - invalid:,} + {invalid:,})"
        ],
    )


def ensure_quix_venv(ctx: Context) -> Path:
    """``bench/.quix-venv`` with Quix Streams and what ``schemas`` needs, created once.

    Quix pins confluent-kafka and pydantic below our versions, hence its own virtualenv.
    """
    python = QUIX_VENV / "bin" / "python"
    marker = QUIX_VENV / f".quixstreams-{QUIX_VERSION}-{QUIX_VENV_REVISION}"
    if marker.exists():
        return python
    ctx.progress(f"baselines: creating {QUIX_VENV} with quixstreams {QUIX_VERSION} (once)…")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)  # noqa: S603
    packages = [
        f"quixstreams=={QUIX_VERSION}",
        f"msgspec=={metadata.version('msgspec')}",
        f"uuid-utils=={metadata.version('uuid-utils')}",
        "psycopg[binary]>=3.2",
        f"redis=={metadata.version('redis')}",
    ]
    done = subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "--quiet", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"pip could not set up {QUIX_VENV}:\n{done.stdout}\n{done.stderr}")
    marker.touch()
    return python


def _result_line(log: Path) -> dict[str, float]:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("RESULT "):
            parsed: dict[str, float] = json.loads(line.removeprefix("RESULT "))
            return parsed
    raise BenchError(f"no RESULT line in {log}")


def _run_to_exit(
    ctx: Context, name: str, argv: Sequence[str], env: dict[str, str]
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Run a self-terminating baseline; (wall seconds, CPU by process, its RESULT line)."""
    begun = time.perf_counter()
    proc = start(name, argv, ctx.workdir, env)
    meter = _stack_meter(ctx, {})
    meter.start()
    try:
        code, own_cpu = wait_with_cpu(proc.proc, TIME_LIMIT_S)
    finally:
        if proc.proc.returncode is None:
            stop([proc])
    seconds = time.perf_counter() - begun
    cpu = {"app": own_cpu, **meter.stop()}
    if code != 0:
        raise BenchError(f"{name} exited with {code}:\n{proc.tail()}")
    return seconds, cpu, _result_line(proc.log)


def run_quix(
    ctx: Context, settings: Settings, fleet: Fleet, count: int, topics: list[str]
) -> Result:
    python = ensure_quix_venv(ctx)
    ctx.progress(f"baselines: Quix Streams on {count:,} readings…")
    argv = [
        str(python),
        "-m",
        "bench.baselines.quix_pipeline",
        "--bootstrap",
        settings.kafka.bootstrap_servers,
        "--raw",
        settings.topics.raw,
        "--readings",
        topics[0],
        "--deadletter",
        topics[1],
        "--group",
        f"bench-quix-{uuid.uuid4().hex[:8]}",
        "--dsn",
        settings.postgres.dsn(),
        "--expect",
        str(count),
        "--state-dir",
        str(ctx.workdir / "quix-state"),
    ]
    try:
        seconds, cpu, outcome = _run_to_exit(ctx, "quix", argv, {"PYTHONPATH": str(REPO)})
    finally:
        asyncio.run(delete_run(settings, fleet.devices))
    steady = outcome["first_to_last_s"]
    return Result(
        "baselines",
        f"Quix Streams {QUIX_VERSION}",
        count,
        seconds,
        steady_rate=count / steady if steady else None,
        cpu_s=cpu,
        notes=[
            f"validate → curated topic + COPY sink per checkpoint (5 s, Quix's default); "
            f"{int(outcome['rows']):,} rows; steady = first message → final checkpoint done"
        ],
    )


def run_seed001(ctx: Context, settings: Settings, count: int) -> Result:
    ctx.progress(f"baselines: seed 001 design on {count:,} readings…")
    run_id = uuid.uuid4().hex[:10]
    table, queue = f"seed001_sensor_data_{run_id}", f"bench:seed001:{run_id}:sensor_data_queue"
    argv = [
        sys.executable,
        "-m",
        "bench.baselines.seed001",
        "--topic",
        settings.topics.raw,
        "--group",
        f"bench-seed001-{run_id}",
        "--table",
        table,
        "--queue",
        queue,
        "--expect",
        str(count),
    ]
    try:
        seconds, cpu, outcome = _run_to_exit(ctx, "seed001", argv, settings_env(settings))
    finally:
        asyncio.run(_drop_table(settings, table))
        client = sync_client(settings.redis)
        client.delete(queue)
        client.close()
    return Result(
        "baselines",
        "seed 001 design (INSERT + commit + LPUSH per reading)",
        count,
        seconds,
        steady_rate=count / outcome["first_to_last_s"],
        cpu_s=cpu,
        notes=[
            f"Pydantic + async SQLAlchemy session per reading, 10 in flight; "
            f"{int(outcome['inserted']):,} rows, {int(outcome['rejected']):,} rejected (422)"
        ],
    )


async def _drop_table(settings: Settings, table: str) -> None:
    db = await connect(settings.postgres)
    try:
        await db.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await db.close()

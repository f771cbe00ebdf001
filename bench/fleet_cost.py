"""Scenario ``fleet-cost``: one worker's CPU per reading at 2,000, 20,000 and 100,000 registered
devices, at the same total rate, and the memory each device takes.

    uv run python -m bench.fleet_cost [--sizes 2000,20000,100000] [--rate 20000] [--rounds 5]

The agents run in this process on a virtual clock (``bench.fleet_sim``): every device of the
fleet is registered (so enrichment runs) and sends in turn, ``--rate`` readings a second in all,
in raw envelopes of 100 readings as the edges make them. Each fleet first warms up for
``WARM_UP_S`` virtual seconds at one reading per device a minute, so every device has a status
row and a rollup row with the windows a live device has (the grace period keeps ~8 open), then
``--rounds`` rounds measure ``--seconds`` virtual seconds of each fleet in turn (interleaved,
so a busy machine slows all sizes alike); the figure is the median over rounds of the
process CPU per reading (librdkafka's threads included), and the ratio is that of the medians.

Memory per device:

* worker: the process's resident memory after the warm-up, less before the fleet was made,
  over its devices (tables, the registry copy, the status deadlines, pending rollups);
* API device cache: the same for a registry copy (``DeviceIndex``) alone;
* Redis: ``MEMORY USAGE`` of a device's two hashes, written by the Redis sink's commands
  for a sample of the fleet under a fresh prefix (deleted afterwards);
* Postgres: the ``devices`` row with its indexes (a temporary copy of the table filled with
  the fleet's rows, ``pg_total_relation_size`` over rows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import shlex
import statistics
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.data import new_fleet
from bench.fleet_sim import PHASES, FleetSim, registered
from connectors.kafka.security import client_config
from connectors.postgres.pool import connect
from connectors.redis.clients import sync_client
from connectors.redis.keys import RedisKeys
from connectors.redis.writer import RedisWriter
from schemas.settings import Settings, get_settings
from streams.context import output_producer_config
from streams.runtime import tune_gc

SIZES = (2_000, 20_000, 100_000)
RATE = 20_000
ROUNDS = 5
SECONDS = 5
"""Virtual seconds per size and round at least (at 100,000 devices and 20,000/s each device
sends once in 5 s); a round lasts one whole rollup publish interval if that is longer, so it
holds every slot's tick (:func:`round_seconds`)."""
WARM_UP_S = int(os.environ.get("FLEET_COST_WARM_UP_S", "480"))
"""Virtual seconds of warm-up at one reading per device a minute: the rollup rows fill up with
the windows the default grace period (300 s) keeps open."""
TARGET_RATIO = 1.2
REDIS_SAMPLE = 2_000
PAGE = 4096

Progress = Callable[[str], None]


def round_seconds(settings: Settings, seconds: int | None) -> int:
    """``seconds`` if given, else one rollup publish interval (at least ``SECONDS``)."""
    if seconds is not None:
        return seconds
    return max(SECONDS, math.ceil(settings.stream.rollup_publish_interval_s))


def rss_bytes() -> int:
    """Resident memory of this process."""
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * PAGE


@dataclass
class SizeResult:
    devices: int
    us_per_reading: list[float] = field(default_factory=list)
    phases_us: dict[str, list[float]] = field(default_factory=dict)
    records_per_reading: float = 0.0
    changelog_bytes_per_reading: float = 0.0
    worker_bytes_per_device: float = 0.0

    @property
    def median_us(self) -> float:
        return statistics.median(self.us_per_reading)

    def phase_median(self, phase: str) -> float:
        return statistics.median(self.phases_us.get(phase, [0.0]))


@dataclass
class FleetCost:
    sizes: list[SizeResult]
    rate: int
    seconds: int
    rounds: int
    api_cache_bytes_per_device: float = 0.0
    redis_bytes_per_device: float = 0.0
    postgres_bytes_per_device: float = 0.0
    produced: bool = True

    @property
    def ratio(self) -> float:
        return self.sizes[-1].median_us / self.sizes[0].median_us


async def _warm_up(sim: FleetSim, progress: Progress) -> None:
    per_second = max(1, round(len(sim.fleet.devices) / 60))
    for second in range(WARM_UP_S):
        await sim.second(per_second)
        if second % 120 == 119:
            progress(f"fleet-cost: {len(sim.fleet.devices):,} devices, warm-up {second + 1} s")


async def measure(
    settings: Settings,
    sizes: Sequence[int],
    *,
    rate: int = RATE,
    rounds: int = ROUNDS,
    seconds: int | None = None,
    producer: Producer | None = None,
    scratch: str = "",
    progress: Progress = print,
) -> FleetCost:
    seconds = round_seconds(settings, seconds)
    tune_gc(settings.gc_gen0_threshold)  # the collector as the worker runs it
    api_cache = _cache_bytes(max(sizes))  # first: later fleets would reuse its freed memory
    sims: list[FleetSim] = []
    results: list[SizeResult] = []
    for devices in sizes:
        gc.collect()
        before = rss_bytes()
        sim = FleetSim(settings, devices, rate, producer, scratch)
        await _warm_up(sim, progress)
        await sim.second()  # one second at the measured rate before any is counted
        gc.collect()
        result = SizeResult(devices, worker_bytes_per_device=(rss_bytes() - before) / devices)
        sims.append(sim)
        results.append(result)
    for round_ in range(rounds):
        for sim, result in zip(sims, results, strict=True):
            sim.reset_counters()
            spent = 0.0
            for _ in range(seconds):
                spent += await sim.second()
            result.us_per_reading.append(spent / sim.readings * 1e6)
            for phase in PHASES:
                result.phases_us.setdefault(phase, []).append(sim.cpu[phase] / sim.readings * 1e6)
            _count_records(sim, result, settings)
            progress(
                f"fleet-cost round {round_ + 1}/{rounds}: {result.devices:,} devices "
                f"{result.us_per_reading[-1]:.1f} µs/reading"
            )
    cost = FleetCost(results, rate, seconds, rounds, produced=producer is not None)
    cost.api_cache_bytes_per_device = api_cache
    return cost


def _count_records(sim: FleetSim, result: SizeResult, settings: Settings) -> None:
    published = sim.ctx.published
    result.records_per_reading = sum(published.records.values()) / sim.readings
    changelogs = sum(size for topic, size in published.bytes.items() if "changelog" in topic)
    result.changelog_bytes_per_reading = changelogs / sim.readings


def _cache_bytes(devices: int) -> float:
    fleet = new_fleet(devices)
    gc.collect()
    before = rss_bytes()
    index = registered(fleet, datetime.now(UTC))
    gc.collect()
    used = rss_bytes() - before
    _kept.append(index)  # kept, so the fleets measured after it do not reuse its memory
    return used / devices


_kept: list[object] = []


@contextmanager
def scratch_topic(settings: Settings) -> Iterator[tuple[Producer, str]]:
    """A producer with the worker's settings and a topic it writes every output to."""
    admin = AdminClient(client_config(settings.kafka.bootstrap_servers, settings.kafka))
    topic = f"bench.fleet-cost.{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(topic, settings.kafka.partitions, 1)])[topic].result(30)
    try:
        yield Producer(output_producer_config(settings).librdkafka()), topic
    finally:
        admin.delete_topics([topic])[topic].result(30)


def redis_bytes_per_device(settings: Settings, sim: FleetSim) -> float:
    """``MEMORY USAGE`` of a device's status and latest hashes as the Redis sink writes them,
    for a sample of the fleet written under a fresh prefix (deleted afterwards)."""
    batch = asyncio.run(sim.redis_batch(REDIS_SAMPLE))
    keys = RedisKeys(f"bench-{uuid.uuid4().hex[:8]}")
    commands = [c for c in RedisWriter(cast(Any, None), keys).commands(batch) if c[0] == "HSET"]
    names = [
        name for device in batch.devices for name in (keys.status(device), keys.latest(device))
    ]
    client = sync_client(settings.redis)
    try:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            cast(Any, pipe).execute_command(*command)
        pipe.execute()
        usage = sum(client.memory_usage(name, samples=0) or 0 for name in names)
        return usage / len(batch.devices)
    finally:
        for start in range(0, len(names), 500):
            client.delete(*names[start : start + 500])
        client.close()


async def postgres_bytes_per_device(settings: Settings, devices: int) -> float:
    """A ``devices`` row with its indexes: a temporary copy of the table (this session's
    only, dropped with it) filled with ``devices`` rows as the registry inserts them."""
    fleet = new_fleet(devices)
    index = registered(fleet, datetime.now(UTC))
    db = await connect(settings.postgres)
    try:
        await db.execute("CREATE TEMP TABLE bench_devices (LIKE devices INCLUDING ALL)")
        rows = [
            (
                d.device_id,
                d.name,
                d.profile,
                d.tags,
                msgspec.json.encode(d.metadata).decode(),
                d.is_enabled,
                d.token_hash,
                d.inactivity_timeout_s,
                d.created_at,
                d.updated_at,
            )
            for d in (index.get(device_id) for device_id in fleet.devices)
            if d is not None
        ]
        await db.executemany(
            "INSERT INTO bench_devices (device_id, name, profile, tags, metadata, is_enabled, "
            "token_hash, inactivity_timeout_s, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)",
            rows,
        )
        await db.execute("VACUUM ANALYZE bench_devices")
        size = await db.fetchval("SELECT pg_total_relation_size('bench_devices')")
        return float(size) / devices
    finally:
        await db.close()


def report(cost: FleetCost) -> list[str]:
    """The lines of the result: the table, the ratio, where the time goes, memory."""
    lines = [
        f"| devices | µs/reading (median of {cost.rounds}) | runs | records/reading | "
        "changelog bytes/reading | worker bytes/device |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for size in cost.sizes:
        runs = ", ".join(f"{us:.1f}" for us in size.us_per_reading)
        lines.append(
            f"| {size.devices:,} | {size.median_us:.1f} | {runs} | "
            f"{size.records_per_reading:.2f} | {size.changelog_bytes_per_reading:.0f} | "
            f"{size.worker_bytes_per_device:,.0f} |"
        )
    first, last = cost.sizes[0], cost.sizes[-1]
    verdict = "within" if cost.ratio <= TARGET_RATIO else "above"
    lines += [
        "",
        f"ratio {last.devices:,} / {first.devices:,} devices: **{cost.ratio:.2f}** "
        f"({verdict} the {TARGET_RATIO} target)",
        "",
        "| phase, µs/reading (median) | " + " | ".join(f"{s.devices:,}" for s in cost.sizes) + " |",
        "| --- |" + " ---: |" * len(cost.sizes),
    ]
    for phase in PHASES:
        lines.append(
            f"| {phase} | " + " | ".join(f"{s.phase_median(phase):.1f}" for s in cost.sizes) + " |"
        )
    lines += [
        "",
        f"memory per device: worker {last.worker_bytes_per_device:,.0f} B (at {last.devices:,}); "
        f"API device cache {cost.api_cache_bytes_per_device:,.0f} B; "
        f"Redis {cost.redis_bytes_per_device:,.0f} B; "
        f"Postgres (devices row + indexes) {cost.postgres_bytes_per_device:,.0f} B",
    ]
    if not cost.produced:
        lines.append("outputs were counted, not produced (--no-kafka)")
    return lines


def run(
    settings: Settings,
    sizes: Sequence[int] = SIZES,
    *,
    rate: int = RATE,
    rounds: int = ROUNDS,
    seconds: int | None = None,
    kafka: bool = True,
    progress: Progress = print,
) -> FleetCost:
    """The whole scenario, memory included (needs the stack's Kafka, Redis and Postgres)."""
    settings = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"table_store": "memory"})}
    )
    with contextlib.ExitStack() as stack:
        producer, scratch = stack.enter_context(scratch_topic(settings)) if kafka else (None, "")
        cost = asyncio.run(
            measure(
                settings,
                sizes,
                rate=rate,
                rounds=rounds,
                seconds=seconds,
                producer=producer,
                scratch=scratch,
                progress=progress,
            )
        )
    sample = FleetSim(settings, REDIS_SAMPLE, rate)
    cost.redis_bytes_per_device = redis_bytes_per_device(settings, sample)
    cost.postgres_bytes_per_device = asyncio.run(postgres_bytes_per_device(settings, max(sizes)))
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--rate", type=int, default=RATE)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=int, help="per size and round (one publish interval)")
    parser.add_argument("--no-kafka", action="store_true", help="count outputs, produce none")
    parser.add_argument("--record", action="store_true", help="write its block to RESULTS.md")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    cost = run(
        get_settings(),
        sizes,
        rate=args.rate,
        rounds=args.rounds,
        seconds=args.seconds,
        kafka=not args.no_kafka,
    )
    lines = report(cost)
    print("\n".join(lines))
    if args.record:
        record(lines, "uv run python -m bench.fleet_cost " + shlex.join(sys.argv[1:]))


def record(lines: list[str], command: str) -> None:
    """The block of this run in RESULTS.md, in place of the scenario's previous one."""
    from bench.report import format_blocks, read_machine, record_run
    from bench.versions import versions

    blocks = format_blocks(
        when=datetime.now(UTC),
        command=command,
        machine=read_machine(),
        versions=versions(get_settings(), quix=False),
        results=[],
        texts={"fleet-cost": lines},
    )
    record_run(blocks)


if __name__ == "__main__":
    main()

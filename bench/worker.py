"""Benchmark: the worker alone, from a pre-filled ``fleet.raw.v1`` to rows in Postgres.

    uv run fleetstream setup
    uv run python -m bench.worker [--readings 50000] [--workers 1]

Fills fresh topics with raw events (confluent-kafka, not timed), then starts the worker(s) and
times until every reading is a row: the rate of the agents without the edge competing for the
cores. Bounded in count and time; stops what it started by pid, deletes its topics and rows.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from confluent_kafka import Producer

from bench.pipeline import TIME_LIMIT_S, bench_settings, services
from connectors.kafka.admin import delete_topics, ensure_topics
from schemas.events import encode_raw_event
from streams.settings import Settings, get_settings
from streams.topology import topic_specs
from tests.factories import device_ids, raw_event, reading
from tests.support import wait_until


def fill_raw_topic(settings: Settings, devices: list[str], count: int) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 20, "acks": "all"}
    )
    now = datetime.now(UTC)
    for n in range(count):
        device = devices[n % len(devices)]
        event = raw_event(reading(device, n), received_at=now)
        while True:
            try:
                producer.produce(settings.topics.raw, encode_raw_event(event), device.encode())
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} raw events were not delivered")


async def time_until_stored(settings: Settings, devices: list[str], count: int) -> float:
    db = await asyncpg.connect(settings.postgres.dsn())
    try:
        started = time.perf_counter()

        async def all_rows() -> bool:
            found = await db.fetchval(
                "SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices
            )
            return bool(int(found) >= count)

        await wait_until(all_rows, timeout_s=TIME_LIMIT_S, what="all rows", poll_s=0.1)
        elapsed = time.perf_counter() - started
        await db.execute("DELETE FROM readings WHERE device_id = ANY($1)", devices)
        return elapsed
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        settings = bench_settings(get_settings(), Path(tmp))
        specs = topic_specs(settings)
        ensure_topics(settings.kafka.bootstrap_servers, specs)
        devices = device_ids(200, prefix="benchw")
        try:
            fill_raw_topic(settings, devices, args.readings)
            with services(settings, Path(tmp), ["worker"] * args.workers):
                seconds = asyncio.run(time_until_stored(settings, devices, args.readings))
        finally:
            delete_topics(settings.kafka.bootstrap_servers, [spec.name for spec in specs])
    print(f"readings={args.readings} workers={args.workers}")
    print(f"worker start + raw → rows: {seconds:6.2f}s = {args.readings / seconds:>8,.0f}/s")


if __name__ == "__main__":
    main()

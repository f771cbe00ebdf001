"""Benchmark: readings over HTTP to rows in Postgres, through the real local stack.

    uv run fleetstream setup
    uv run python -m bench.pipeline [--readings 20000] [--batch 100] [--concurrency 8] [--workers 1]

Starts its own API (uvicorn, on a free loopback port) and one worker, on fresh topics, posts
the readings to 127.0.0.1 and reports: the edge's accept rate (a 202 means the batch is in
Kafka), request latency p50/p99, and the end-to-end rate until every reading is a row in
Postgres. Bounded in count and time; stops what it started by pid and deletes its topics and rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from connectors.kafka.admin import delete_topics, ensure_topics
from streams.settings import Settings, get_settings
from streams.topology import topic_specs
from tests.factories import device_ids, reading
from tests.support import free_port, isolated, settings_env, wait_until

TIME_LIMIT_S = 300.0


def bench_settings(base: Settings, workdir: Path) -> Settings:
    settings = isolated(base, "bench", workdir / "faust")
    return settings.model_copy(
        update={"api": settings.api.model_copy(update={"port": free_port()})}
    )


@contextmanager
def services(settings: Settings, workdir: Path, commands: list[str]) -> Iterator[None]:
    """Run ``fleetstream <command>`` for each of ``commands``; stop them (by pid) on exit."""
    env = {**os.environ, **settings_env(settings)}
    procs = []
    for n, name in enumerate(commands):
        # Each worker its own Faust data dir: they may share a machine, never a directory.
        own = {**env, "FLEET_WORKER__DATADIR": str(workdir / f"faust-{n}")}
        with (workdir / f"{name}-{n}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(  # noqa: S603 - our own CLI
                    [sys.executable, "-m", "cli.main", name],
                    env=own,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def post_all(
    url: str, bodies: list[list[dict[str, object]]], concurrency: int
) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(url, json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 202:
                raise RuntimeError(f"{response.status_code}: {response.text}")

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return latencies


async def warm_up(base: str, db: asyncpg.Connection, device: str) -> None:
    """One reading through the whole pipeline, so the clock starts with the worker running."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base}/v1/readings", json=reading(device, -1))
        response.raise_for_status()

    async def stored() -> bool:
        found = await db.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", device)
        return bool(found)

    await wait_until(stored, timeout_s=120, what="the warm-up reading")


async def run(args: argparse.Namespace, settings: Settings) -> None:
    base = f"http://{settings.api.host}:{settings.api.port}"
    async with httpx.AsyncClient() as client:

        async def api_ready() -> bool:
            try:
                return (await client.get(f"{base}/health/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(api_ready, timeout_s=60, what="the API")
    devices = device_ids(200, prefix="bench")
    items = [reading(devices[n % len(devices)], n) for n in range(args.readings)]
    bodies = [items[i : i + args.batch] for i in range(0, len(items), args.batch)]
    db = await asyncpg.connect(settings.postgres.dsn())
    try:
        await warm_up(base, db, devices[0])
        started = time.perf_counter()
        latencies = await post_all(f"{base}/v1/readings", bodies, args.concurrency)
        accepted_s = time.perf_counter() - started

        async def all_rows() -> bool:
            count = await db.fetchval(
                "SELECT count(*) FROM readings WHERE device_id = ANY($1)", devices
            )
            return bool(int(count) >= int(args.readings) + 1)

        await wait_until(all_rows, timeout_s=TIME_LIMIT_S, what="all rows", poll_s=0.1)
        stored_s = time.perf_counter() - started
        await db.execute("DELETE FROM readings WHERE device_id = ANY($1)", devices)
    finally:
        await db.close()
    report(args, accepted_s, stored_s, latencies)


def report(
    args: argparse.Namespace, accepted_s: float, stored_s: float, latencies: list[float]
) -> None:
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"readings={args.readings} batch={args.batch} concurrency={args.concurrency} "
        f"workers={args.workers}"
    )
    print(f"edge accepted (in Kafka): {accepted_s:6.2f}s = {args.readings / accepted_s:>8,.0f}/s")
    print(f"request latency: p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")
    print(f"rows in Postgres:         {stored_s:6.2f}s = {args.readings / stored_s:>8,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one group)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        workdir = Path(tmp)
        settings = bench_settings(get_settings(), workdir)
        specs = topic_specs(settings)
        ensure_topics(settings.kafka.bootstrap_servers, specs)
        try:
            with services(settings, workdir, ["api"] + ["worker"] * args.workers):
                asyncio.run(run(args, settings))
        finally:
            delete_topics(settings.kafka.bootstrap_servers, [spec.name for spec in specs])


if __name__ == "__main__":
    main()

"""Scenario ``ingest``: HTTP → Kafka, acked, with load from wrk (compiled, so the client does not
eat the CPU it measures).

One API process (``fleetstream api``) on a free loopback port and fresh topics; for each batch
size, wrk POSTs pre-generated bodies for a fixed time through ``ingest.lua``, which counts 202s
and everything else. Readings/s acked = 202s * batch size / duration; latency percentiles are
wrk's. CPU of the API, the broker and wrk is read from /proc over each run.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.context import Context, fresh_topics
from bench.cpu import CpuMeter, run_with_cpu
from bench.data import new_fleet, readings, request_bodies
from bench.procs import BenchError, Started, bench_settings, services
from bench.stats import Percentiles, Result
from cli.stack import installer

LUA = Path(__file__).with_name("ingest.lua")
CONNECTIONS = {1: 64, 100: 32, 1000: 16}
"""Concurrent connections per batch size: enough in flight for the edge to group readings."""
DEVICES = 3000
WARM_UP_S = 3


@dataclass(frozen=True)
class WrkSummary:
    accepted: int
    other: int
    socket_errors: int
    seconds: float
    latency: Percentiles


def parse_wrk(output: str) -> WrkSummary:
    """The ``FLEETBENCH {json}`` line that ingest.lua's ``done()`` prints."""
    line = next(ln for ln in output.splitlines() if ln.startswith("FLEETBENCH "))
    data = json.loads(line.removeprefix("FLEETBENCH "))
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "timeout"))
    return WrkSummary(
        accepted=int(data["accepted"]),
        other=int(data["other"]),
        socket_errors=errors,
        seconds=data["duration_us"] / 1e6,
        latency=Percentiles(data["p50_us"] / 1e3, data["p95_us"] / 1e3, data["p99_us"] / 1e3),
    )


def ensure_wrk(ctx: Context) -> str:
    """Path of ``wrk``, installed from Debian's package when missing (as the stack does)."""
    installer.ensure([installer.command("wrk", "wrk")], ctx.workdir / "apt.log", ctx.progress)
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed")
    return found


def write_bodies(path: Path, batch: int, readings_total: int) -> None:
    """``readings_total`` valid readings as request bodies of ``batch``, one body per line."""
    fleet = new_fleet(DEVICES)
    bodies = request_bodies(list(readings(fleet, readings_total, invalid_every=None)), batch)
    path.write_bytes(b"\n".join(bodies) + b"\n")


def run_wrk(
    wrk: str, url: str, bodies: Path, *, connections: int, seconds: int, timeout_s: float
) -> tuple[str, float]:
    """Run wrk; return its output and its CPU seconds."""
    argv = [
        wrk,
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(bodies),
    ]
    out_path = bodies.with_suffix(".out")
    with out_path.open("wb") as out:
        code, cpu = run_with_cpu(argv, out, timeout_s)
    output = out_path.read_text(errors="replace")
    if code != 0:
        raise BenchError(f"wrk failed ({code}):\n{output[-2000:]}")
    return output, cpu


async def wait_ready(base: str, api: Started) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            api.check_alive()
            try:
                if (await client.get(f"{base}/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # polling the API's readiness, bounded by the loop
    raise BenchError("the API did not become ready within 60 s")


def run(
    ctx: Context, *, batches: tuple[int, ...] = (1, 100, 1000), seconds: int = 15
) -> list[Result]:
    wrk = ensure_wrk(ctx)
    settings = bench_settings(ctx.base, ctx.workdir)
    base = f"http://{settings.api.host}:{settings.api.port}"
    url = f"{base}/v1/readings"
    results = []
    with fresh_topics(settings), services(settings, ctx.workdir, ["api"]) as started:
        api = started[0]
        asyncio.run(wait_ready(base, api))
        for batch in batches:
            bodies = ctx.workdir / f"bodies-{batch}.jsonl"
            write_bodies(bodies, batch, max(4000, 40 * batch))
            connections = CONNECTIONS.get(batch, 16)
            ctx.progress(f"ingest: batch {batch}, {connections} connections, warm-up…")
            run_wrk(wrk, url, bodies, connections=connections, seconds=WARM_UP_S, timeout_s=60)
            ctx.progress(f"ingest: batch {batch}, measuring {seconds} s…")
            meter = CpuMeter({"api": [api.pid], "kafka": [ctx.stack["kafka"]]})
            meter.start()
            output, wrk_cpu = run_wrk(
                wrk, url, bodies, connections=connections, seconds=seconds, timeout_s=seconds + 60
            )
            cpu = {**meter.stop(), "load": wrk_cpu}
            api.check_alive()
            summary = parse_wrk(output)
            result = Result(
                "ingest",
                f"fleetstream API, batch {batch:,}",
                summary.accepted * batch,
                summary.seconds,
                latency=summary.latency,
                cpu_s=cpu,
                notes=[
                    f"{connections} connections; {summary.accepted:,} requests answered 202, "
                    f"{summary.other:,} other statuses, {summary.socket_errors:,} socket errors"
                ],
            )
            ctx.progress(
                f"ingest: batch {batch}: {result.rate:,.0f} readings/s acked, "
                f"p99 {summary.latency.p99:.1f} ms, non-202 {summary.other}"
            )
            results.append(result)
    return results

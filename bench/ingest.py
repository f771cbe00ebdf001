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
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.context import Context, fresh_topics
from bench.cpu import CpuMeter, run_with_cpu
from bench.data import new_fleet, readings, request_bodies
from bench.procs import BenchError, Started, bench_settings, services, start, stop
from bench.stats import Percentiles, Result
from cli.stack import installer
from tests.support import free_port

LUA = Path(__file__).with_name("ingest.lua")
CONNECTIONS = {1: 128, 100: 32, 1000: 16}
"""Concurrent connections per batch size: enough in flight for the edge to group readings.
One reading per request is latency-bound (each waits ~10-30 ms for Kafka's ack): 64
connections capped it near 64 / 0.025 s, so it gets 128, as many devices would (below the
256 a process serves at once, FLEET_API__MAX_CONCURRENT_REQUESTS)."""
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


async def wait_ready(base: str, api: Started, path: str = "/health/ready") -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            api.check_alive()
            try:
                if (await client.get(f"{base}{path}")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # polling the API's readiness, bounded by the loop
    raise BenchError(f"{api.name} did not become ready within 60 s")


def run(
    ctx: Context,
    *,
    batches: tuple[int, ...] = (1, 100, 1000),
    seconds: int = 15,
    ceiling: bool = True,
) -> list[Result]:
    """A row per batch size; with ``ceiling`` and batch 1, the bare FastAPI endpoint first."""
    wrk = ensure_wrk(ctx)
    settings = bench_settings(ctx.base, ctx.workdir)
    base = f"http://{settings.api.host}:{settings.api.port}"
    results: list[Result] = []
    if ceiling and 1 in batches:
        results.append(_bare_ceiling(ctx, wrk, seconds))
    with fresh_topics(settings), services(settings, ctx.workdir, ["api"]) as started:
        api = started[0]
        asyncio.run(wait_ready(base, api))
        for batch in batches:
            load = Load(wrk, f"{base}/v1/readings", _bodies(ctx, batch), CONNECTIONS.get(batch, 16))
            ctx.progress(f"ingest: batch {batch}, {load.connections} connections, measuring…")
            summary, cpu = load.measure(seconds, {"api": [api.pid], "kafka": [ctx.stack["kafka"]]})
            api.check_alive()
            result = _result(f"fleetstream API, batch {batch:,}", batch, summary, cpu, load)
            if batch == 1 and results:
                result.notes.append(_against_ceiling(result, results[0]))
            ctx.progress(
                f"ingest: batch {batch}: {result.rate:,.0f} readings/s acked, "
                f"p99 {summary.latency.p99:.1f} ms, non-202 {summary.other}"
            )
            results.append(result)
    return results


@dataclass(frozen=True)
class Load:
    """wrk against one URL with one body file and connection count."""

    wrk: str
    url: str
    bodies: Path
    connections: int

    def measure(
        self, seconds: int, pids: dict[str, list[int]]
    ) -> tuple[WrkSummary, dict[str, float]]:
        """A warm-up, then ``seconds`` of load with the CPU of ``pids`` and of wrk."""
        run_wrk(
            self.wrk,
            self.url,
            self.bodies,
            connections=self.connections,
            seconds=WARM_UP_S,
            timeout_s=60,
        )
        meter = CpuMeter(pids)
        meter.start()
        output, wrk_cpu = run_wrk(
            self.wrk,
            self.url,
            self.bodies,
            connections=self.connections,
            seconds=seconds,
            timeout_s=seconds + 60,
        )
        return parse_wrk(output), {**meter.stop(), "load": wrk_cpu}


def _bodies(ctx: Context, batch: int) -> Path:
    bodies = ctx.workdir / f"bodies-{batch}.jsonl"
    if not bodies.exists():
        write_bodies(bodies, batch, max(4000, 40 * batch))
    return bodies


def _result(
    system: str, batch: int, summary: WrkSummary, cpu: dict[str, float], load: Load
) -> Result:
    return Result(
        "ingest",
        system,
        summary.accepted * batch,
        summary.seconds,
        latency=summary.latency,
        cpu_s=cpu,
        notes=[
            f"{load.connections} connections; {summary.accepted:,} requests answered 202, "
            f"{summary.other:,} other statuses, {summary.socket_errors:,} socket errors"
        ],
    )


def _bare_ceiling(ctx: Context, wrk: str, seconds: int) -> Result:
    """The bare FastAPI endpoint (``bench.baselines.bare_fastapi``) with the one-reading load."""
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "bench.baselines.bare_fastapi:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    bare = start("bare-fastapi", argv, ctx.workdir)
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}", bare, path="/openapi.json"))
        load = Load(wrk, f"http://127.0.0.1:{port}/v1/readings", _bodies(ctx, 1), CONNECTIONS[1])
        ctx.progress(f"ingest: bare FastAPI endpoint, {load.connections} connections, measuring…")
        summary, cpu = load.measure(seconds, {"api": [bare.pid]})
        bare.check_alive()
    finally:
        stop([bare])
    return _result("bare FastAPI endpoint (ceiling), batch 1", 1, summary, cpu, load)


def _against_ceiling(ours: Result, bare: Result) -> str:
    """The issue's measure of the one-reading edge: requests/s and API CPU a request."""

    def api_us(result: Result) -> float:
        return result.cpu_s.get("api", 0.0) * 1e6 / max(result.readings, 1)

    return (
        f"{ours.rate / bare.rate:.2f}x the bare FastAPI endpoint's requests/s (same run, "
        f"same load); API CPU {api_us(ours):.0f} µs a request against {api_us(bare):.0f} µs"
    )

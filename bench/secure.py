"""Scenario ``secure``: what secure mode costs on the whole path, ingest and pipeline, plain and
secure measured in the same run.

Two stacks of the run's own, started by the stack code (``cli/stack/private.py``) with the same
heap and settings: *plain* (Kafka PLAINTEXT; Postgres, Redis and Apicurio in clear text) and
*secure* (Kafka SASL_SSL with SCRAM principals and ACLs; Postgres, Redis and Apicurio on TLS
only, clients verifying the stack's CA), the shared stack left alone. Rounds alternate between
them (plain first, then secure first), so both see the same machine. Each round, on fresh uuid
topics and a fresh fleet of :data:`DEVICES` registered devices:

* **ingest**: one API process (HTTP; HTTPS as principal ``api`` in secure mode); wrk POSTs
  batches of :data:`BATCH` readings of one device each, with that device's token, on
  :data:`CONNECTIONS` keep-alive connections for a warm-up and then ``seconds``;
  requests/s and readings/s answered 202, CPU of the API and the broker per reading.
* **pipeline**: then one worker (principal ``worker``) takes everything the ingest put on the raw
  topic (warm-up included) to rows in Postgres; readings/s from the first row to the last, CPU
  of the worker, the broker, Postgres and Redis per reading. wrk counts the answers it read
  before its time ran out; the requests in flight then are stored too, so the wait ends once
  the rows reach the count acked (at most ``CONNECTIONS * BATCH`` readings short per wrk run).

The block gives every round and the medians per mode with their secure ÷ plain ratios.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import fleet_devices
from bench.context import Context, delete_run, fresh_topics, wait_run_stored
from bench.cpu import CpuMeter
from bench.data import Fleet, new_fleet, readings, request_bodies
from bench.ingest import ensure_wrk, parse_wrk, run_wrk
from bench.procs import BenchError, Started, services, stack_pids
from bench.report import format_table
from bench.stats import Result
from cli import secure_mode
from cli.stack.certs import Pki
from cli.stack.kafka import kafka_services
from cli.stack.kafka_security import ADMIN, principal_kafka
from cli.stack.private import free_ports, private_stack
from connectors.postgres import migrate
from schemas.settings import Settings, get_settings
from tests.support import isolated

MODES = ("plain", "secure")
SERVICES = ("kafka", "postgres", "redis", "apicurio")
DEVICES = 400
BATCH = 100
BODIES_PER_DEVICE = 2
CONNECTIONS = 32
WARM_UP_S = 3
SECONDS = 10
ROUNDS = 2
PIPELINE_LIMIT_S = 300.0
READY_S = 120.0


@dataclass
class Mode:
    """One of the two stacks: its settings as the super user sees them, its services' pids."""

    name: str
    settings: Settings
    pids: dict[str, int]

    @property
    def secure(self) -> bool:
        return self.name == "secure"


@dataclass
class Round:
    mode: str
    ingest: Result
    requests_per_s: float
    pipeline: Result
    load: float = float("nan")
    """The machine's 1-minute load average at the round's end (2 cores: above 2, others wait)."""


def run(ctx: Context, *, rounds: int = ROUNDS, seconds: int = SECONDS) -> list[str]:
    """Both stacks up, ``rounds`` alternating rounds of each; the block's lines."""
    wrk = ensure_wrk(ctx)
    measured: list[Round] = []
    with ExitStack() as stack:
        modes = [stack.enter_context(_stack(ctx, name)) for name in MODES]
        for n in range(rounds):
            for mode in modes if n % 2 == 0 else modes[::-1]:
                ctx.wait_for_stack()
                with _process_kafka(mode):
                    measured.append(_round(ctx, mode, wrk, seconds, ctx.workdir / f"{n}"))
    return report(measured, seconds)


@contextmanager
def _stack(ctx: Context, name: str) -> Iterator[Mode]:
    home = ctx.workdir / f"stack-{name}"
    home.mkdir()
    say = lambda line: ctx.progress(f"secure bench, {name} stack: {line}")  # noqa: E731
    with private_stack(ctx.base, home, SERVICES, secure=name == "secure", progress=say) as s:
        migrate.upgrade(s.postgres)
        yield Mode(name, s, stack_pids(s))


@contextmanager
def _process_kafka(mode: Mode) -> Iterator[None]:
    """This process's Kafka clients that take their security from the environment (topic
    admin, registry publisher, watermarks) connect as ``admin`` to the secure broker."""
    env = secure_mode.kafka_env(mode.settings, ADMIN) if mode.secure else {}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def _round(ctx: Context, mode: Mode, wrk: str, seconds: int, workdir: Path) -> Round:
    workdir.mkdir(exist_ok=True)
    workdir = workdir / mode.name
    workdir.mkdir()
    (api_port,) = free_ports(1)
    settings = isolated(mode.settings, "bench", workdir / "faust")
    settings = settings.model_copy(
        update={
            "environment": "development",
            "api": settings.api.model_copy(update={"port": api_port}),
        }
    )
    fleet = new_fleet(DEVICES)
    with fresh_topics(settings):
        if mode.secure:  # the ACLs of this round's topic names and app id
            kafka_services(settings)[0].after_healthy(ctx.progress)
        try:
            tokens = asyncio.run(fleet_devices.register(settings, fleet.devices))
            bodies = workdir / "bodies.tsv"
            write_bodies(bodies, fleet, tokens, datetime.now(UTC))
            ingest, accepted, rps = _ingest(ctx, mode, settings, wrk, bodies, seconds, workdir)
            pipeline = _pipeline(ctx, mode, settings, fleet, accepted * BATCH, workdir)
        finally:
            asyncio.run(delete_run(settings, fleet.devices))
    return Round(mode.name, ingest, rps, pipeline, os.getloadavg()[0])


def write_bodies(path: Path, fleet: Fleet, tokens: dict[str, str], now: datetime) -> None:
    """Lines ``<token>\\t<body>``: :data:`BODIES_PER_DEVICE` bodies of :data:`BATCH` readings
    per device, every reading valid (one invalid item would refuse its whole request), their
    timestamps in the minute before ``now``."""
    count = len(fleet.devices) * BATCH * BODIES_PER_DEVICE
    per_device: dict[str, list[dict[str, object]]] = {device: [] for device in fleet.devices}
    for body in readings(fleet, count, invalid_every=None, now=now):
        per_device[str(body["device_id"])].append(body)
    lines = [
        tokens[device].encode() + b"\t" + body
        for device, mine in per_device.items()
        for body in request_bodies(mine, BATCH)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def _as(mode: Mode, settings: Settings, principal: str, cert: str) -> Settings:
    """``settings`` of a child: in secure mode its principal, and its certificate to serve."""
    if not mode.secure:
        return settings
    pki = Pki.of_home(mode.settings.stack.home)
    update: dict[str, object] = {"kafka": principal_kafka(settings, principal)}
    if principal == "api":
        update["api"] = settings.api.model_copy(
            update={"tls_certfile": str(pki.cert(cert)), "tls_keyfile": str(pki.key(cert))}
        )
    return settings.model_copy(update=update)


def _ingest(
    ctx: Context,
    mode: Mode,
    settings: Settings,
    wrk: str,
    bodies: Path,
    seconds: int,
    workdir: Path,
) -> tuple[Result, int, float]:
    """The result, the requests answered 202 (warm-up included: all are on the raw topic) and
    the measured requests/s."""
    api_settings = _as(mode, settings, "api", "api")
    scheme = "https" if mode.secure else "http"
    base = f"{scheme}://127.0.0.1:{settings.api.port}"
    with services(api_settings, workdir, ["api"]) as (api,):
        _wait_ready(base, api, mode)
        ctx.progress(f"secure bench, {mode.name}: ingest warm-up…")
        url = f"{base}/v1/readings"
        warm, _ = run_wrk(
            wrk, url, bodies, connections=CONNECTIONS, seconds=WARM_UP_S, timeout_s=120
        )
        meter = CpuMeter({"api": [api.pid], "kafka": [mode.pids["kafka"]]})
        meter.start()
        output, wrk_cpu = run_wrk(
            wrk, url, bodies, connections=CONNECTIONS, seconds=seconds, timeout_s=seconds + 120
        )
        cpu = {**meter.stop(), "load": wrk_cpu}
        api.check_alive()
    summary, warm_summary = parse_wrk(output), parse_wrk(warm)
    if summary.accepted == 0:
        raise BenchError(f"{mode.name}: no request was accepted; see {api.log}")
    rps = summary.accepted / summary.seconds
    result = Result(
        "secure",
        f"{mode.name}: ingest, batch {BATCH}",
        summary.accepted * BATCH,
        summary.seconds,
        latency=summary.latency,
        cpu_s=cpu,
        notes=[
            f"{rps:,.0f} requests/s; {summary.other:,} other statuses, "
            f"{summary.socket_errors:,} socket errors"
        ],
    )
    ctx.progress(f"secure bench, {mode.name}: ingest {result.rate:,.0f} readings/s, {rps:,.0f}/s")
    return result, summary.accepted + warm_summary.accepted, rps


def _wait_ready(base: str, api: Started, mode: Mode) -> None:
    """Until the API answers ready (its registry cache read), over TLS trusting the CA."""
    verify: str | bool = str(Pki.of_home(mode.settings.stack.home).ca_cert) if mode.secure else True
    deadline = time.monotonic() + READY_S
    with httpx.Client(verify=verify, timeout=5) as client:
        while time.monotonic() < deadline:
            api.check_alive()
            try:
                if client.get(f"{base}/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)  # polling the API's readiness, bounded by the deadline
    raise BenchError(f"the API did not become ready within {READY_S:.0f} s; see {api.log}")


def _pipeline(
    ctx: Context, mode: Mode, settings: Settings, fleet: Fleet, expected: int, workdir: Path
) -> Result:
    worker_settings = _as(mode, settings, "worker", "worker")
    ctx.progress(f"secure bench, {mode.name}: pipeline of {expected:,} readings…")
    start_at = time.time()
    with services(worker_settings, workdir, ["worker"]) as workers:
        meter = CpuMeter(
            {
                "worker": [w.pid for w in workers],
                **{name: [pid] for name, pid in mode.pids.items()},
            }
        )
        meter.start()
        stored = asyncio.run(
            wait_run_stored(
                ctx,
                settings,
                fleet.devices,
                expected,
                timeout_s=PIPELINE_LIMIT_S,
                watched=workers,
            )
        )
        cpu = meter.stop()
    steady = stored.handled / max(stored.done_at - stored.first_row_at, 1e-3)
    notes = [f"{stored.rows:,} rows + {stored.dead:,} dead letters of {expected:,} acked"]
    if not stored.complete:
        notes.append(f"**incomplete** after {PIPELINE_LIMIT_S:.0f} s; rates are of those")
    result = Result(
        "secure",
        f"{mode.name}: pipeline, 1 worker",
        stored.handled,
        stored.done_at - start_at,
        steady_rate=steady,
        cpu_s=cpu,
        notes=notes,
    )
    ctx.progress(f"secure bench, {mode.name}: pipeline {steady:,.0f} readings/s steady")
    return result


# --- the block ---------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _per_m(result: Result, *names: str) -> float:
    per_million = result.cpu_per_million()
    return sum(per_million.get(name, 0.0) for name in names)


FIGURES = (
    ("ingest: requests/s answered 202", lambda r: r.requests_per_s),
    ("ingest: readings/s answered 202", lambda r: r.ingest.rate),
    ("ingest: API CPU s per million readings", lambda r: _per_m(r.ingest, "api")),
    ("ingest: broker CPU s per million readings", lambda r: _per_m(r.ingest, "kafka")),
    ("pipeline: readings/s to rows (steady)", lambda r: r.pipeline.best_rate),
    ("pipeline: worker CPU s per million readings", lambda r: _per_m(r.pipeline, "worker")),
    (
        "pipeline: CPU s/M of worker, broker, Postgres, Redis",
        lambda r: _per_m(r.pipeline, "worker", "kafka", "postgres", "redis"),
    ),
)


def report(rounds: Sequence[Round], seconds: int) -> list[str]:
    """The rounds' table, then the medians per mode and secure ÷ plain."""
    lines = [
        f"{DEVICES} devices with tokens, batches of {BATCH} readings from one device each, "
        f"{CONNECTIONS} connections, {WARM_UP_S} s warm-up + {seconds} s measured; then one "
        f"worker drains what was acked; {len(rounds) // 2} round(s) per mode, alternating. "
        "Load average (1 min) at the end of each round: "
        + ", ".join(f"{r.mode} {r.load:.1f}" for r in rounds)
        + " (2 cores: CPU per reading is the steadier figure on a busy machine).",
        "",
        *format_table([r.ingest for r in rounds] + [r.pipeline for r in rounds]),
        "",
        "| median of the rounds | plain | secure | secure ÷ plain |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, figure in FIGURES:
        plain = _median([figure(r) for r in rounds if r.mode == "plain"])
        secure = _median([figure(r) for r in rounds if r.mode == "secure"])
        ratio = secure / plain if plain else float("nan")
        lines.append(f"| {name} | {plain:,.1f} | {secure:,.1f} | {ratio:.2f} |")
    return lines

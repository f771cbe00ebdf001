"""``fleetstream bench``: run scenarios and baselines, print progress, record the results.

Each step waits for the shared stack to be healthy (other work may restart a service), runs
bounded in count and time, and cleans up after itself (uuid topics deleted, rows deleted, the
processes it started stopped by pid). A step that fails is reported in the run's notes and the
others still run; the command then exits non-zero. The run's blocks replace those of the same
scenarios in RESULTS.md; the replaced ones go to HISTORY.md beside it (``bench.report``).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import ingest, latency, mqtt, mqtt_front, pipeline, profile
from bench.context import Context, Progress, one_line
from bench.report import (
    HISTORY_NAME,
    RESULTS,
    format_blocks,
    read_machine,
    record_run,
    run_text,
)
from bench.stats import Result
from bench.versions import versions
from schemas.settings import get_settings

PIPELINE_TARGET = 50_000.0
FLOOR_READINGS = 50_000
"""Readings of the floor step (``bench.floor``): its figures settle by 50,000."""
PROFILE_READINGS = 400_000
PROFILE_LIMIT_S = 40.0
"""The profile run needs its samples (from 4 to 14 s after the start), not every row."""


@dataclass
class Plan:
    """What to run, with its bounds (the defaults are what ``make bench`` runs)."""

    ingest: bool = False
    pipeline_workers: tuple[int, ...] = ()
    latency: bool = False
    kafka_tools: bool = False
    per_message_baselines: bool = False
    pipeline_readings: int = 1_000_000
    pipeline_flows: int = 0
    mqtt_readings: int = 0
    """With N > 0: N readings through one MQTT bridge to rows, and the HTTP edge beside it."""
    mqtt_per_message: int = 1
    mqtt_front_readings: int = 0
    """With N > 0: N single-reading QoS 1 messages through one MQTT front to rows."""
    mqtt_front_connections: int = mqtt_front.CONNECTIONS
    mqtt_front_window: int = mqtt_front.WINDOW
    """With N > 0, each pipeline run is repeated with N flows on every device (bench/flows_load)."""
    ingest_seconds: int = 15
    latency_seconds: float = 30.0
    latency_rate: float = 5000.0
    kafka_records: int = 2_000_000
    faust_readings: int = 200_000
    quix_readings: int = 200_000
    same_job_readings: int = 0
    """With N > 0: one worker and Quix Streams doing the same job on N preloaded readings
    (``bench.pipeline.run_same_job``), after the pipeline runs."""
    seed001_readings: int = 20_000
    profile: str = "auto"
    """py-spy on a worker: "auto" (when one worker misses its target), "always" or "never"."""
    floor: bool = False
    """Last: ``bench.floor`` in this process, and the budget it leaves beside the pipeline's."""
    fleet_cost: bool = False
    """``bench.fleet_cost``: worker CPU per reading at 2k, 20k and 100k registered devices."""
    fleet_cost_rounds: int = 3
    secure_rounds: int = 0
    """With N > 0: ``bench.secure``, N rounds each of a plain and a secure stack of its own."""
    secure_seconds: int = 10


def all_plan() -> Plan:
    return Plan(
        ingest=True,
        pipeline_workers=(1, 2),
        latency=True,
        mqtt_readings=200_000,
        mqtt_front_readings=100_000,
        kafka_tools=True,
        per_message_baselines=True,
        same_job_readings=200_000,
        floor=True,
        fleet_cost=True,
    )


@dataclass
class Outcome:
    results: list[Result]
    failures: list[str]
    block: str


def run(
    plan: Plan, command: str, progress: Progress = print, results: Path | None = None
) -> Outcome:
    """Run ``plan``; record its blocks in ``results`` (RESULTS.md), even when a step failed."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        ctx = Context(get_settings(), Path(tmp), progress)
        measured: list[Result] = []
        failures: list[str] = []
        texts: dict[str, list[str]] = {}
        for name, step in _steps(plan, ctx, measured, texts):
            ctx.wait_for_stack()
            begun = time.monotonic()
            progress(f"== {name}")
            try:
                measured += step()
            except Exception as exc:  # noqa: BLE001 - one failed step must not hide the others
                failures.append(f"**{name} failed**: {one_line(exc)}")
                progress(f"{name} FAILED: {exc}")
            progress(f"== {name}: {time.monotonic() - begun:.0f} s")
        failures += ctx.failures
        blocks = format_blocks(
            when=datetime.now(UTC),
            command=command,
            machine=read_machine(),
            versions=versions(
                ctx.base, quix=plan.per_message_baselines or bool(plan.same_job_readings)
            ),
            results=measured,
            notes=[*ctx.notes, *failures],
            texts=texts,
        )
        target = results or RESULTS
        replaced = record_run(blocks, target)
        progress(
            f"wrote {', '.join(b.key for b in blocks) or 'nothing'} to {target}"
            + (f"; the blocks replaced are in {target.with_name(HISTORY_NAME)}" if replaced else "")
        )
    return Outcome(measured, failures, run_text(blocks))


Step = tuple[str, Callable[[], list[Result]]]


def _steps(
    plan: Plan, ctx: Context, results: list[Result], texts: dict[str, list[str]]
) -> list[Step]:
    from bench.baselines import kafka_tools, suite

    steps: list[Step] = []
    if plan.kafka_tools:
        steps.append(
            (
                "Kafka's performance tools",
                lambda: kafka_tools.run(
                    ctx.base, ctx.stack["kafka"], plan.kafka_records, ctx.progress
                ),
            )
        )
    if plan.ingest:
        steps.append(("ingest", lambda: ingest.run(ctx, seconds=plan.ingest_seconds)))
    for workers in plan.pipeline_workers:
        steps.append(
            (
                f"pipeline, {workers} worker(s)",
                lambda workers=workers: [  # type: ignore[misc]
                    pipeline.run(ctx, count=plan.pipeline_readings, workers=workers)
                ],
            )
        )
        if plan.pipeline_flows:
            steps.append(
                (
                    f"pipeline, {workers} worker(s), {plan.pipeline_flows} flows per device",
                    lambda workers=workers: [  # type: ignore[misc]
                        pipeline.run(
                            ctx,
                            count=plan.pipeline_readings,
                            workers=workers,
                            flows=plan.pipeline_flows,
                        )
                    ],
                )
            )
    if plan.same_job_readings:
        steps.append(
            (
                "pipeline, same job: one worker and Quix Streams",
                lambda: pipeline.run_same_job(ctx, count=plan.same_job_readings),
            )
        )
    if 1 in plan.pipeline_workers and plan.profile != "never":
        steps.append(("profile of one worker", lambda: _profile_if_needed(plan, ctx, results)))
    steps += _mqtt_steps(plan, ctx)
    if plan.secure_rounds:
        steps.append(("secure mode against plain", lambda: _secure(plan, ctx, texts)))
    if plan.latency:
        steps.append(
            (
                "latency",
                lambda: [latency.run(ctx, rate=plan.latency_rate, seconds=plan.latency_seconds)],
            )
        )
    if plan.per_message_baselines:
        steps.append(
            (
                "per-message baselines",
                lambda: suite.run(
                    ctx,
                    faust=plan.faust_readings,
                    quix=plan.quix_readings,
                    seed001=plan.seed001_readings,
                ),
            )
        )
    return steps + _last_steps(plan, ctx, results, texts)


def _last_steps(
    plan: Plan, ctx: Context, results: list[Result], texts: dict[str, list[str]]
) -> list[Step]:
    """The in-process steps, after those that start processes of their own."""
    steps: list[Step] = []
    if plan.fleet_cost:
        steps.append(("fleet cost", lambda: _fleet_cost(plan, ctx, texts)))
    if plan.floor:  # last: it tunes this process's garbage collector as the worker does
        steps.append(("floor", lambda: _floor(ctx, results)))
    return steps


def _mqtt_steps(plan: Plan, ctx: Context) -> list[Step]:
    steps: list[Step] = []
    if plan.mqtt_readings:
        steps.append(
            (
                "mqtt bridge",
                lambda: mqtt.run_with_edge(
                    ctx, count=plan.mqtt_readings, per_message=plan.mqtt_per_message
                ),
            )
        )
    if plan.mqtt_front_readings:
        steps.append(
            (
                "mqtt front",
                lambda: [
                    mqtt_front.run(
                        ctx,
                        count=plan.mqtt_front_readings,
                        connections=plan.mqtt_front_connections,
                        window=plan.mqtt_front_window,
                    )
                ],
            )
        )
    return steps


def _fleet_cost(plan: Plan, ctx: Context, texts: dict[str, list[str]]) -> list[Result]:
    from bench import fleet_cost

    cost = fleet_cost.run(ctx.base, rounds=plan.fleet_cost_rounds, progress=ctx.progress)
    texts["fleet-cost"] = fleet_cost.report(cost)
    return []


def _secure(plan: Plan, ctx: Context, texts: dict[str, list[str]]) -> list[Result]:
    from bench import secure

    texts["secure"] = secure.run(ctx, rounds=plan.secure_rounds, seconds=plan.secure_seconds)
    return []


def _floor(ctx: Context, results: list[Result]) -> list[Result]:
    from bench import floor

    ctx.progress(f"floor: timing the library calls of {FLOOR_READINGS:,} readings…")
    steps = floor.measure(FLOOR_READINGS, 3, ctx.base)
    one = next(
        (r for r in results if r.scenario == "pipeline" and r.system == "fleetstream, 1 worker"),
        None,
    )
    ctx.notes += floor.budget_lines(steps, one, read_machine().cores)
    return []


def _profile_if_needed(plan: Plan, ctx: Context, results: list[Result]) -> list[Result]:
    one = next(
        (
            r
            for r in results
            if r.scenario == "pipeline" and r.system.startswith("fleetstream, 1 worker")
        ),
        None,
    )
    if plan.profile == "auto" and one is not None and one.best_rate >= PIPELINE_TARGET:
        return []
    executable = profile.py_spy()
    if executable is None:
        ctx.notes.append("py-spy is not installed (dev dependency): no profile")
        return []
    ctx.progress("one worker below target: profiling a second run with py-spy…")
    sampled = pipeline.run(
        ctx,
        count=PROFILE_READINGS,
        workers=1,
        profile_with=executable,
        time_limit_s=PROFILE_LIMIT_S,
    )
    ctx.notes += [
        f"profile run ({PROFILE_READINGS:,} readings, rate not counted): {line}"
        for line in sampled.notes
        if line.startswith("py-spy")
    ]
    return []


def command_line() -> str:
    """How this process was started, for the block (``fleetstream bench ...``)."""
    argv = list(sys.argv)
    name = Path(argv[0]).name
    # `python -m cli.main bench ...` (e.g. from a clean worktree) is the same command.
    argv[0] = "fleetstream" if name in ("main.py", "__main__.py") else name
    return shlex.join(argv)

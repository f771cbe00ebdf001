"""The block a benchmark run appends to ``bench/RESULTS.md``: machine, versions, command,
one table per scenario, and the targets of issue 5 with their ratios."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.stats import Result

RESULTS = Path(__file__).with_name("RESULTS.md")

SCENARIO_TITLES = {
    "ingest": "ingest: HTTP → Kafka, acked (`acks=all`), load from wrk",
    "pipeline": "pipeline: preloaded raw envelopes → rows in Postgres + dead letters",
    "latency": "latency: steady open-loop load, request → row",
    "baselines": "baselines: the same kind of readings, one reading per Kafka message",
    "mqtt": "mqtt: paho publishers → Mosquitto → one bridge → worker → rows in Postgres",
}
CPU_ORDER = ("api", "worker", "app", "kafka", "postgres", "redis", "load", "other")


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gib: float

    def describe(self) -> str:
        return f"{self.cpu}, {self.cores} cores, {self.ram_gib:.1f} GiB RAM"


def read_machine(proc: Path = Path("/proc")) -> Machine:
    """CPU model, cores and RAM from ``/proc/cpuinfo`` and ``/proc/meminfo``."""
    cpu, cores = "unknown CPU", 0
    for line in (proc / "cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            cpu = value.strip()
            cores += 1
    ram_kib = 0
    for line in (proc / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram_kib = int(line.split()[1])
    return Machine(cpu, cores or (os.cpu_count() or 0), ram_kib / 1024 / 1024)


def python_version() -> str:
    return f"Python {platform.python_version()}"


def _fmt_rate(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:,.0f}"


def _fmt_ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _fmt_cpu(per_million: Mapping[str, float]) -> tuple[str, str]:
    """('api 3.10 · kafka 1.20 · other 0.40', '4.30'): the breakdown and the total, s per
    million; the total leaves out ``other`` (the rest of the machine, not the system)."""
    names = sorted(per_million, key=lambda n: (CPU_ORDER.index(n) if n in CPU_ORDER else 50, n))
    parts = [f"{name} {per_million[name]:.1f}" for name in names]
    total = sum(value for name, value in per_million.items() if name != "other")
    return " · ".join(parts), (f"{total:.1f}" if per_million else "")


def format_table(results: Sequence[Result]) -> list[str]:
    lines = [
        "| system | readings | seconds | readings/s | steady readings/s | p50 ms | p95 ms "
        "| p99 ms | CPU s per million readings | total CPU s/M |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for result in results:
        p50, p95, p99 = (
            (result.latency.p50, result.latency.p95, result.latency.p99)
            if result.latency
            else (None, None, None)
        )
        breakdown, total = _fmt_cpu(result.cpu_per_million())
        lines.append(
            f"| {result.system} | {result.readings:,} | {result.seconds:,.1f} "
            f"| {_fmt_rate(result.rate)} | {_fmt_rate(result.steady_rate)} "
            f"| {_fmt_ms(p50)} | {_fmt_ms(p95)} | {_fmt_ms(p99)} | {breakdown} | {total} |"
        )
    notes = [f"* {result.system}: {note}" for result in results for note in result.notes]
    return [*lines, *(["", *notes] if notes else [])]


@dataclass(frozen=True)
class Target:
    """A goal of issue 5: ``measure`` finds the figure in the results (None: not measured)."""

    name: str
    goal: float
    unit: str
    measure: Callable[[Sequence[Result]], float | None]
    at_most: bool = False

    def row(self, results: Sequence[Result]) -> str:
        value = self.measure(results)
        if value is None or math.isnan(value):
            return f"| {self.name} | not measured | {self.goal:,g} {self.unit} | | ? |"
        met = value <= self.goal if self.at_most else value >= self.goal
        ratio = self.goal / value if self.at_most else value / self.goal
        shown = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        return (
            f"| {self.name} | {shown} {self.unit} | {self.goal:,g} {self.unit} "
            f"| {ratio:.2f} | {'yes' if met else '**no**'} |"
        )


def find(results: Sequence[Result], scenario: str, system_prefix: str) -> Result | None:
    for result in results:
        if result.scenario == scenario and result.system.startswith(system_prefix):
            return result
    return None


def _rate(scenario: str, system: str) -> Callable[[Sequence[Result]], float | None]:
    def measure(results: Sequence[Result]) -> float | None:
        found = find(results, scenario, system)
        return None if found is None else found.best_rate

    return measure


def _ratio(
    top: Callable[[Sequence[Result]], float | None],
    bottom: Callable[[Sequence[Result]], float | None],
) -> Callable[[Sequence[Result]], float | None]:
    def measure(results: Sequence[Result]) -> float | None:
        a, b = top(results), bottom(results)
        return None if a is None or b is None or b == 0 else a / b

    return measure


def _p99(results: Sequence[Result]) -> float | None:
    found = find(results, "latency", "fleetstream")
    return None if found is None or found.latency is None else found.latency.p99


def _ingest_1000(results: Sequence[Result]) -> float | None:
    found = [r for r in results if r.scenario == "ingest" and r.system.endswith("batch 1,000")]
    return found[0].best_rate if found else None


ONE_WORKER = _rate("pipeline", "fleetstream, 1 worker")
TARGETS = (
    Target("pipeline, one worker", 50_000, "readings/s", ONE_WORKER),
    Target("ingest, batches of 1,000", 100_000, "readings/s", _ingest_1000),
    Target(
        "one worker ÷ Faust per-message",
        3,
        "x",
        _ratio(ONE_WORKER, _rate("baselines", "Faust per-message")),
    ),
    Target("one worker ÷ Quix Streams", 1.5, "x", _ratio(ONE_WORKER, _rate("baselines", "Quix"))),
    Target(
        "one worker ÷ seed 001 design", 20, "x", _ratio(ONE_WORKER, _rate("baselines", "seed 001"))
    ),
    Target("latency p99 request → row at 5,000/s", 250, "ms", _p99, at_most=True),
    Target("MQTT, one bridge, to rows", 20_000, "readings/s", _rate("mqtt", "fleetstream MQTT")),
)


def format_targets(results: Sequence[Result]) -> list[str]:
    lines = [
        "| target | measured | goal | ratio to goal | met |",
        "| --- | ---: | ---: | ---: | :---: |",
    ]
    lines += [target.row(results) for target in TARGETS]
    producer = find(results, "baselines", "Kafka ProducerPerformance")
    edge = _ingest_1000(results)
    if producer is not None and edge is not None:
        lines.append(
            f"| ingest batches of 1,000 ÷ Kafka ProducerPerformance (info) "
            f"| {edge / producer.best_rate:.2f} x | | | |"
        )
    return lines


def format_block(
    *,
    when: datetime,
    command: str,
    machine: Machine,
    versions: Mapping[str, str],
    results: Sequence[Result],
    notes: Sequence[str] = (),
) -> str:
    """The Markdown block of one run (ends with a newline)."""
    lines = [
        f"## Run {when:%Y-%m-%d %H:%M %Z}".rstrip(),
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine.describe()} (from /proc). "
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
    ]
    for scenario, title in SCENARIO_TITLES.items():
        chosen = [r for r in results if r.scenario == scenario]
        if chosen:
            lines += [f"### {title}", "", *format_table(chosen), ""]
    if any(target.measure(results) is not None for target in TARGETS):
        lines += [
            "### Targets (issue 5)",
            "",
            "Rates are the steady ones where measured (first stored reading to last), else the "
            "overall ones.",
            "",
            *format_targets(results),
            "",
        ]
    if notes:
        lines += [*(f"* {note}" for note in notes), ""]
    return "\n".join(lines) + "\n"


def append_block(block: str, path: Path = RESULTS) -> None:
    """Append ``block`` to RESULTS.md, separated from what is there by a blank line."""
    existing = path.read_text() if path.exists() else "# Benchmark results\n"
    separator = "" if existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
    path.write_text(existing + separator + block)

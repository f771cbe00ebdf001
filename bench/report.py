"""What a benchmark run writes: one block per scenario (its table, with the run's time, command,
machine and versions) and the targets of issue 5 with their ratios.

``bench/RESULTS.md`` shows the latest run of each scenario: :func:`record_run` puts a run's blocks
in place of the blocks of the same scenarios there, and files each block it replaces in
``bench/HISTORY.md`` under its own run, newest run first. A target row that the run did not
measure keeps the figure of the last run that did (its time in the ``run`` column)."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.stats import Result

RESULTS = Path(__file__).with_name("RESULTS.md")
HISTORY_NAME = "HISTORY.md"
"""Beside the results file (``--results FILE`` too)."""

SCENARIO_TITLES = {
    "ingest": "ingest: HTTP → Kafka, acked (`acks=all`), load from wrk",
    "pipeline": "pipeline: preloaded raw envelopes → rows in Postgres + dead letters",
    "latency": "latency: steady open-loop load, request → row",
    "baselines": "baselines: the same kind of readings, one reading per Kafka message",
    "mqtt": "mqtt: paho publishers → Mosquitto → one bridge → worker → rows in Postgres",
    "mqtt-front": "mqtt-front: MQTT publishers → one MQTT front (PUBACK after Kafka's ack) → "
    "worker → rows in Postgres",
    "fleet-cost": "fleet-cost: one worker's CPU per reading at 2,000, 20,000 and 100,000 "
    "registered devices (agents in process, virtual clock)",
    "secure": "secure: the same ingest (device tokens) and pipeline on a plain and a secure "
    "stack of the run's own (TLS, SASL_SSL, ACLs), alternating",
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


NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Target:
    """A goal of issue 5: ``measure`` finds the figure in the results (None: not measured)."""

    name: str
    goal: float
    unit: str
    measure: Callable[[Sequence[Result]], float | None]
    at_most: bool = False

    def row(self, results: Sequence[Result], run: str = "") -> str:
        value = self.measure(results)
        if value is None or math.isnan(value):
            return f"| {self.name} | {NOT_MEASURED} | {self.goal:,g} {self.unit} | | ? | |"
        met = value <= self.goal if self.at_most else value >= self.goal
        ratio = self.goal / value if self.at_most else value / self.goal
        shown = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        return (
            f"| {self.name} | {shown} {self.unit} | {self.goal:,g} {self.unit} "
            f"| {ratio:.2f} | {'yes' if met else '**no**'} | {run} |"
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
        "one worker ÷ Quix Streams (same job)",
        2,
        "x",
        _ratio(_rate("pipeline", "same job: fleetstream"), _rate("pipeline", "same job: Quix")),
    ),
    Target(
        "one worker ÷ seed 001 design", 20, "x", _ratio(ONE_WORKER, _rate("baselines", "seed 001"))
    ),
    Target("latency p99 request → row at 5,000/s", 250, "ms", _p99, at_most=True),
    Target("MQTT, one bridge, to rows", 20_000, "readings/s", _rate("mqtt", "fleetstream MQTT")),
    Target(
        "MQTT, one front, to rows", 20_000, "readings/s", _rate("mqtt-front", "fleetstream MQTT")
    ),
)


def format_targets(results: Sequence[Result], run: str = "") -> list[str]:
    """The targets table; ``run`` (the run's time) fills the ``run`` column of measured rows."""
    lines = [
        "| target | measured | goal | ratio to goal | met | run |",
        "| --- | ---: | ---: | ---: | :---: | --- |",
    ]
    lines += [target.row(results, run) for target in TARGETS]
    ours, quix = (
        find(results, "pipeline", "same job: fleetstream"),
        find(results, "pipeline", "same job: Quix"),
    )
    if ours is not None and quix is not None and ours.cpu_s.get("worker") and quix.cpu_s.get("app"):
        cpu = (quix.cpu_s["app"] / quix.readings) / (ours.cpu_s["worker"] / ours.readings)
        lines.append(
            f"| Quix Streams (same job) ÷ one worker, own CPU per reading (info) "
            f"| {cpu:.2f} x | | | | {run} |"
        )
    producer = find(results, "baselines", "Kafka ProducerPerformance")
    edge = _ingest_1000(results)
    if producer is not None and edge is not None:
        lines.append(
            f"| ingest batches of 1,000 ÷ Kafka ProducerPerformance (info) "
            f"| {edge / producer.best_rate:.2f} x | | | | {run} |"
        )
    return lines


TARGETS_KEY = "targets"
TARGETS_HEADING = "### Targets (issue 5)"
BLOCK_ORDER = (*SCENARIO_TITLES, TARGETS_KEY)
"""Blocks in RESULTS.md, in this order: one per scenario, then the targets."""
LATEST_HEADING = "## Latest `fleetstream bench` run of each scenario"
TARGETS_INTRO = (
    "Rates are the steady ones where measured (first stored reading to last), else the overall "
    "ones. A row that a run did not measure keeps the figure of the last run that did (`run`); "
    "the notes below are those of the run named above."
)
HISTORY_TEMPLATE = """# Benchmark history

Every benchmark run that `bench/RESULTS.md` no longer shows, newest first. `fleetstream bench`
files here each block a new run replaces there, under the run it came from.
"""


@dataclass(frozen=True)
class Block:
    """One scenario's table (or the targets) of one run, as Markdown without a final newline."""

    key: str
    text: str


def run_time(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M %Z}".rstrip()


def format_blocks(
    *,
    when: datetime,
    command: str,
    machine: Machine,
    versions: Mapping[str, str],
    results: Sequence[Result],
    notes: Sequence[str] = (),
    texts: Mapping[str, Sequence[str]] | None = None,
) -> list[Block]:
    """The blocks of one run: each scenario measured, then the targets and the run's notes
    (when a target was measured or there are notes). ``texts`` holds the lines of scenarios
    that report more than a table of results (``fleet-cost``)."""
    texts = texts or {}
    header = [
        f"Run {run_time(when)}. Command: `{command}`",
        "",
        f"Machine: {machine.describe()} (from /proc). "
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
    ]
    blocks = []
    for scenario, title in SCENARIO_TITLES.items():
        if scenario in texts:
            blocks.append(
                Block(scenario, "\n".join([f"### {title}", "", *header, *texts[scenario]]))
            )
            continue
        chosen = [r for r in results if r.scenario == scenario]
        if chosen:
            text = "\n".join([f"### {title}", "", *header, *format_table(chosen)])
            blocks.append(Block(scenario, text))
    if any(target.measure(results) is not None for target in TARGETS) or notes:
        lines = [TARGETS_HEADING, "", *header, TARGETS_INTRO, ""]
        lines += format_targets(results, f"{when:%Y-%m-%d %H:%M}")
        if notes:
            lines += ["", *(f"* {note}" for note in notes)]
        blocks.append(Block(TARGETS_KEY, "\n".join(lines)))
    return blocks


def format_block(
    *,
    when: datetime,
    command: str,
    machine: Machine,
    versions: Mapping[str, str],
    results: Sequence[Result],
    notes: Sequence[str] = (),
) -> str:
    """The whole run as Markdown (ends with a newline): what ``fleetstream bench`` prints."""
    blocks = format_blocks(
        when=when,
        command=command,
        machine=machine,
        versions=versions,
        results=results,
        notes=notes,
    )
    return run_text(blocks)


def run_text(blocks: Sequence[Block]) -> str:
    return "\n\n".join(block.text for block in blocks) + "\n"


# --- RESULTS.md and HISTORY.md ---------------------------------------------------------------

_HEADING = re.compile(r"^#{1,3} ")
_RUN_LINE = re.compile(r"^Run (\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?: [A-Z]+)?)\. ", re.MULTILINE)
_WHEN = re.compile(r"(\d{4}-\d{2}-\d{2})(?: (\d{2}:\d{2}))?")


def block_key(line: str) -> str | None:
    """The block a heading line starts (``### ingest: ...`` -> ingest), else None."""
    if line.startswith(TARGETS_HEADING):
        return TARGETS_KEY
    for scenario in SCENARIO_TITLES:
        if line.startswith(f"### {scenario}: "):
            return scenario
    return None


def _span(lines: Sequence[str], key: str) -> tuple[int, int] | None:
    """Lines [start, end) of the block ``key``: its heading up to the next heading."""
    for start, line in enumerate(lines):
        if block_key(line) == key:
            end = next(
                (i for i in range(start + 1, len(lines)) if _HEADING.match(lines[i])), len(lines)
            )
            return start, end
    return None


def _place(lines: list[str], block: Block, fallback: int) -> None:
    """Insert ``block`` among the blocks of ``lines`` in :data:`BLOCK_ORDER` (at ``fallback``
    when there is none), followed by a blank line."""
    rank = BLOCK_ORDER.index(block.key)
    later = (_span(lines, key) for key in BLOCK_ORDER[rank + 1 :])
    earlier = (_span(lines, key) for key in reversed(BLOCK_ORDER[: rank + 1]))
    at = next((span[0] for span in later if span), None)
    if at is None:
        at = next((span[1] for span in earlier if span), fallback)
    new = [*block.text.splitlines(), ""]
    if at > 0 and lines[at - 1].strip():
        new.insert(0, "")
    lines[at:at] = new


def _section_end(lines: Sequence[str], heading: str) -> int | None:
    """Where the ``## `` section under ``heading`` ends (None: no such section)."""
    if heading not in lines:
        return None
    start = lines.index(heading)
    return next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("# ", "## "))),
        len(lines),
    )


def _table_rows(text: str) -> dict[str, str]:
    """Rows of the (first) table in ``text`` by their first cell, header and rule left out."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("target", "---"):
            rows.setdefault(cells[0], line)
    return rows


def merge_targets(new: str, old: str) -> str:
    """The targets block ``new`` with the rows it did not measure taken from ``old`` (and old
    rows it lacks, such as an info row, kept after its own)."""
    old_rows, new_rows = _table_rows(old), _table_rows(new)
    lines = new.splitlines()
    for i, line in enumerate(lines):
        name = next((n for n, row in new_rows.items() if row == line), None)
        if name is not None and f"| {NOT_MEASURED} |" in line and name in old_rows:
            lines[i] = old_rows[name]
    kept = [row for name, row in old_rows.items() if name not in new_rows]
    if kept:
        last = max(i for i, line in enumerate(lines) if line.startswith("| "))
        lines[last + 1 : last + 1] = kept
    return "\n".join(lines)


def replace_blocks(text: str, blocks: Sequence[Block]) -> tuple[str, list[Block]]:
    """``text`` (RESULTS.md) with ``blocks`` in place of those of the same scenarios, and the
    blocks they replaced. A scenario not there yet goes among the others in their order."""
    lines = text.splitlines()
    replaced: list[Block] = []
    for block in blocks:
        span = _span(lines, block.key)
        if span is None:
            end = _section_end(lines, LATEST_HEADING)
            if end is None and not any(_span(lines, key) for key in BLOCK_ORDER):
                lines += ["", LATEST_HEADING] if lines else [LATEST_HEADING]
                end = len(lines)
            _place(lines, block, len(lines) if end is None else end)
            continue
        start, end = span
        old = "\n".join(lines[start:end]).rstrip()
        replaced.append(Block(block.key, old))
        new = merge_targets(block.text, old) if block.key == TARGETS_KEY else block.text
        lines[start:end] = [*new.splitlines(), ""]
    return "\n".join(lines).rstrip() + "\n", replaced


def _run_of(block: Block) -> str | None:
    found = _RUN_LINE.search(block.text)
    return found.group(1) if found else None


def _sort_key(text: str) -> str | None:
    """``YYYY-MM-DD HH:MM`` of the first date in ``text`` (00:00 without a time)."""
    found = _WHEN.search(text)
    return f"{found.group(1)} {found.group(2) or '00:00'}" if found else None


def file_in_history(text: str, blocks: Sequence[Block]) -> str:
    """``text`` (HISTORY.md) with ``blocks`` filed under ``## Run <time>`` of the run each came
    from: into that run's entry when there is one, else a new entry above every older run."""
    lines = text.splitlines()
    runs: dict[str, list[Block]] = {}
    for block in blocks:
        runs.setdefault(_run_of(block) or "of unknown time", []).append(block)
    for run, group in runs.items():
        heading = f"## Run {run}"
        end = _section_end(lines, heading)
        if end is not None:
            start = lines.index(heading)
            entry = lines[start:end]
            for block in group:
                _place(entry, block, len(entry))
            lines[start:end] = entry
            continue
        entry = [heading, ""]
        for block in group:
            entry += [*block.text.splitlines(), ""]
        mine = _sort_key(run)
        entries = [i for i, line in enumerate(lines) if line.startswith("## ")]
        older = (i for i in entries if mine is None or (_sort_key(lines[i]) or "9999") < mine)
        at = next(older, len(lines))
        if at == len(lines) and lines and lines[-1].strip():
            entry.insert(0, "")
        lines[at:at] = entry
    return "\n".join(lines).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)


def record_run(blocks: Sequence[Block], results: Path = RESULTS) -> list[Block]:
    """Put ``blocks`` into ``results`` in place of the same scenarios' blocks, and file those
    in HISTORY.md beside it (first: a crash between the two writes duplicates, never loses).
    Returns the blocks replaced."""
    current = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    updated, replaced = replace_blocks(current, blocks)
    if replaced:
        history = results.with_name(HISTORY_NAME)
        before = history.read_text(encoding="utf-8") if history.exists() else HISTORY_TEMPLATE
        _write(history, file_in_history(before, replaced))
    _write(results, updated)
    return replaced

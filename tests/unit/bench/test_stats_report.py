"""bench.stats and bench.report: percentile math, a run's blocks, and how RESULTS.md keeps the
latest run of each scenario while HISTORY.md takes the ones replaced (no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.report import (
    LATEST_HEADING,
    RESULTS,
    SCENARIO_TITLES,
    TARGETS_HEADING,
    Block,
    Machine,
    block_key,
    format_block,
    format_blocks,
    format_targets,
    read_machine,
    record_run,
)
from bench.stats import Percentiles, Result, percentile, summarize


def test_percentile_interpolates_like_postgres_percentile_cont() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10
    assert percentile(values, 100) == 40
    assert percentile(values, 50) == 25
    assert percentile(values, 95) == pytest.approx(38.5)


def test_percentile_of_one_value_and_bad_input() -> None:
    assert percentile([7.0], 99) == 7
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_sorts_first() -> None:
    cuts = summarize([float(n) for n in range(100, 0, -1)])
    assert cuts.p50 == pytest.approx(50.5)
    assert cuts.p99 == pytest.approx(99.01)


def test_result_rates_and_cpu_per_million() -> None:
    result = Result("pipeline", "x", 500_000, 10.0, steady_rate=60_000, cpu_s={"worker": 5.0})
    assert result.rate == 50_000
    assert result.best_rate == 60_000
    assert result.cpu_per_million() == {"worker": 10.0}
    assert Result("s", "y", 0, 0).cpu_per_million() == {}


def test_read_machine_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
    )
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\nMemFree: 1 kB\n")
    machine = read_machine(tmp_path)
    assert (machine.cpu, machine.cores) == ("AMD EPYC", 2)
    assert machine.ram_gib == pytest.approx(23.4375)


def _results() -> list[Result]:
    return [
        Result(
            "ingest",
            "fleetstream API, batch 1,000",
            1_200_000,
            10.0,
            latency=Percentiles(20, 40, 60),
            cpu_s={"api": 6.0, "kafka": 1.2, "load": 0.3, "other": 0.6},
            notes=["16 connections"],
        ),
        Result("baselines", "Kafka ProducerPerformance (250 B records)", 1_000_000, 2.0),
        Result("pipeline", "fleetstream, 1 worker", 1_000_000, 25.0, steady_rate=60_000),
        Result("baselines", "Faust per-message (previous main's design)", 200_000, 20.0),
        Result("baselines", "Quix Streams 3.28.1", 200_000, 5.0, steady_rate=50_000),
        Result("latency", "fleetstream API + 1 worker", 150_000, 30.0, Percentiles(50, 90, 300)),
    ]


def test_block_has_machine_versions_command_tables_and_notes() -> None:
    block = format_block(
        when=datetime(2026, 11, 28, 21, 0, tzinfo=UTC),
        command="fleetstream bench all",
        machine=Machine("AMD EPYC", 2, 23.5),
        versions={"Python": "3.11.7", "Kafka": "4.1.1"},
        results=_results(),
        notes=["a note"],
    )
    assert block.startswith("### ingest: ")
    # every block names its run: the time, the command, the machine and versions
    assert block.count("Run 2026-11-28 21:00 UTC. Command: `fleetstream bench all`") == 5
    assert block.count("Machine: AMD EPYC") == 5  # ingest, pipeline, latency, baselines, targets
    assert "AMD EPYC, 2 cores, 23.5 GiB RAM" in block
    assert "Python 3.11.7, Kafka 4.1.1" in block
    row = next(line for line in block.splitlines() if "batch 1,000" in line and "|" in line)
    # 120,000 readings/s; CPU per million: api 5.0, kafka 1.0, load 0.2, other 0.5; total w/o other
    assert "| 120,000 |" in row
    assert "api 5.0 · kafka 1.0 · load 0.2 · other 0.5 | 6.2 |" in row
    assert "| 20.0 | 40.0 | 60.0 |" in row
    assert "* fleetstream API, batch 1,000: 16 connections" in block
    assert block.index("### ingest") < block.index("### pipeline") < block.index("### latency")
    assert block.rstrip().endswith("* a note")


def test_targets_use_steady_rates_and_ratios() -> None:
    lines = "\n".join(format_targets(_results()))
    assert "| pipeline, one worker | 60,000 readings/s | 50,000 readings/s | 1.20 | yes |" in lines
    assert "| ingest, batches of 1,000 | 120,000 readings/s |" in lines
    # 60,000 / 10,000 = 6x the Faust baseline (goal 3x), 60,000 / 50,000 = 1.2x Quix (1.5x)
    assert "| one worker ÷ Faust per-message | 6.0 x | 3 x | 2.00 | yes |" in lines
    assert "| one worker ÷ Quix Streams | 1.2 x | 1.5 x | 0.80 | **no** |" in lines
    assert "| one worker ÷ seed 001 design | not measured |" in lines
    assert "| latency p99 request → row at 5,000/s | 300 ms | 250 ms | 0.83 | **no** |" in lines
    assert "ProducerPerformance (info) | 0.24 x |" in lines


def _run(when: datetime, results: list[Result], notes: tuple[str, ...] = ()) -> list[Block]:
    return format_blocks(
        when=when,
        command="fleetstream bench all",
        machine=Machine("AMD EPYC", 2, 23.5),
        versions={"commit": f"c{when:%H%M}"},
        results=results,
        notes=notes,
    )


FIRST = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
SECOND = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
THIRD = datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
HAND_WRITTEN = "## Validator (in-process, no services)\n\nWritten by hand: stays as it is.\n"


def _pipeline(rate: int) -> list[Result]:
    return [Result("pipeline", "fleetstream, 1 worker", rate * 10, 10.0, steady_rate=rate)]


def _blocks(text: str) -> dict[str, str]:
    """Block key -> its text, as RESULTS.md holds them."""
    lines = text.splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        key = block_key(line)
        if key is not None:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("#")), None)
            found[key] = "\n".join(lines[i:end]).strip()
    return found


def test_a_new_results_file_gets_every_block_under_the_latest_heading(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    assert record_run(_run(FIRST, _results()), results) == []
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n" + LATEST_HEADING + "\n\n### ingest: ")
    assert list(_blocks(text)) == ["ingest", "pipeline", "latency", "baselines", "targets"]
    assert not (tmp_path / "HISTORY.md").exists()


def test_a_run_replaces_only_its_scenarios_and_files_the_old_blocks(tmp_path: Path) -> None:
    """The 2nd run measures the pipeline alone: the pipeline block is its own, ingest and the
    others stay the 1st run's, and the 1st run's pipeline block moves to HISTORY.md."""
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Benchmark results\n\nIntro.\n\n{LATEST_HEADING}\n\n{HAND_WRITTEN}")
    record_run(_run(FIRST, _results(), ("first run's note",)), results)
    first = _blocks(results.read_text())

    replaced = record_run(_run(SECOND, _pipeline(70_000)), results)

    text = results.read_text()
    now = _blocks(text)
    assert [b.key for b in replaced] == ["pipeline", "targets"]
    assert "Run 2026-11-29 09:30 UTC" in now["pipeline"] and "| 70,000 |" in now["pipeline"]
    for key in ("ingest", "latency", "baselines"):
        assert now[key] == first[key]
    assert text.index(LATEST_HEADING) < text.index("### pipeline") < text.index("## Validator")
    assert text.endswith(HAND_WRITTEN)  # hand-written sections are left alone
    history = (tmp_path / "HISTORY.md").read_text()
    assert history.startswith("# Benchmark history\n")
    entry = history[history.index("## Run 2026-11-28 21:00 UTC") :]
    assert first["pipeline"] in entry and first["targets"] in entry
    assert "| 70,000 |" not in history


def test_targets_keep_the_last_figure_of_what_a_run_did_not_measure(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    record_run(_run(FIRST, _results(), ("first run's note",)), results)
    record_run(_run(SECOND, _pipeline(70_000)), results)
    targets = _blocks(results.read_text())["targets"]
    assert targets.startswith(TARGETS_HEADING)
    assert "| pipeline, one worker | 70,000 readings/s |" in targets
    assert targets.count("| 2026-11-29 09:30 |") == 1
    ingest = next(line for line in targets.splitlines() if "ingest, batches of 1,000 |" in line)
    assert ingest.endswith("| 2026-11-28 21:00 |")  # measured by the first run only
    rows = [line for line in targets.splitlines() if line.startswith("| ")]
    assert "ProducerPerformance (info) | 0.24 x |" in rows[-1]  # an old row the run lacks, last
    assert "| one worker ÷ seed 001 design | not measured |" in targets
    assert "first run's note" not in targets  # the notes are the latest run's


def test_history_stays_newest_first_and_one_entry_per_run(tmp_path: Path) -> None:
    """The 3rd run replaces the 1st run's ingest block (kept until now) and the 2nd run's
    pipeline: the 1st run's blocks join its entry, in scenario order, below the 2nd run's."""
    results = tmp_path / "RESULTS.md"
    record_run(_run(FIRST, _results()), results)
    record_run(_run(SECOND, _pipeline(70_000)), results)
    record_run(_run(THIRD, [*_pipeline(80_000), _results()[0]]), results)

    history = (tmp_path / "HISTORY.md").read_text()
    runs = [line for line in history.splitlines() if line.startswith("## ")]
    # the 3rd run is in RESULTS.md alone; the 2nd run's pipeline above the 1st run's blocks
    assert runs == ["## Run 2026-11-29 09:30 UTC", "## Run 2026-11-28 21:00 UTC"]
    first = history[history.index("## Run 2026-11-28 21:00 UTC") :]
    assert first.index("### ingest") < first.index("### pipeline") < first.index(TARGETS_HEADING)
    assert list(_blocks(results.read_text())) == [
        "ingest",
        "pipeline",
        "latency",
        "baselines",
        "targets",
    ]


def test_results_md_shows_one_block_per_scenario_with_its_run() -> None:
    """The committed file: the latest run of each scenario, each with its command and machine,
    and HISTORY.md's runs newest first."""
    text = RESULTS.read_text()
    blocks = _blocks(text)
    assert set(blocks) == {*SCENARIO_TITLES, "targets"}
    for key, block in blocks.items():
        assert text.count(block) == 1, key
        assert "\nRun 20" in block and ". Command: `" in block, key
        assert "\nMachine: " in block, key
    history = RESULTS.with_name("HISTORY.md").read_text()
    times = [
        line.removeprefix("## Run ") for line in history.splitlines() if line.startswith("## Run ")
    ]
    assert len(times) > 10
    assert times == sorted(times, reverse=True)


def test_the_same_job_peer_has_a_rate_ratio_and_a_cpu_ratio() -> None:
    results = [
        Result("pipeline", "fleetstream, 1 worker", 1_000_000, 25.0, steady_rate=60_000),
        Result(
            "pipeline",
            "same job: fleetstream, 1 worker",
            200_000,
            10.0,
            steady_rate=30_000,
            cpu_s={"worker": 10.0},
        ),
        Result(
            "pipeline",
            "same job: Quix Streams 3.28.1",
            200_000,
            20.0,
            steady_rate=12_000,
            cpu_s={"app": 25.0},
        ),
    ]
    lines = "\n".join(format_targets(results))
    # the same run's two rows, not the pipeline step's worker: 30,000 / 12,000
    assert "| one worker ÷ Quix Streams (same job) | 2.5 x | 2 x | 1.25 | yes |" in lines
    assert "| Quix Streams (same job) ÷ one worker, own CPU per reading (info) | 2.50 x |" in lines

"""bench.stats and bench.report: percentile math and the RESULTS.md block (no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.report import Machine, append_block, format_block, format_targets, read_machine
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
    assert block.startswith("## Run 2026-11-28 21:00 UTC\n")
    assert "Command: `fleetstream bench all`" in block
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


def test_append_block_keeps_what_is_there(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nold")
    append_block("## Run A\n", results)
    append_block("## Run B\n", results)
    assert results.read_text() == "# Benchmark results\n\nold\n\n## Run A\n\n## Run B\n"

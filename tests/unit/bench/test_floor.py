"""bench.floor: the envelopes it reads and the budget it prints (no services)."""

from __future__ import annotations

from agents.curated import _reader as device_state_reader
from bench.floor import budget_lines, curated_envelopes, raw_envelopes, report
from bench.stats import Result
from schemas.envelopes import decode_raw_record
from tests import clock


def test_report_sums_the_steps_and_leaves_the_rest_to_our_logic() -> None:
    lines = report([("decode", 1.5), ("encode", 2.25)], worker_us=44.0)

    assert lines[:2] == [f"{'decode':42}   1.50 µs/reading", f"{'encode':42}   2.25 µs/reading"]
    assert lines[2] == f"{'floor (sum)':42}   3.75 µs/reading"
    assert "20.0 µs a reading (one core)" in lines[3]
    assert "40.0 for every process together" in lines[3]
    assert lines[4] == (
        "worker measured at 44.0 µs: 40.2 µs are our own logic and the framework; "
        "at 50,000/s they would have 16.2"
    )


def test_report_without_a_worker_figure_stops_at_the_budget() -> None:
    assert len(report([("decode", 1.0)], worker_us=None)) == 3


def test_the_timed_envelopes_decode_whole_as_the_worker_reads_them() -> None:
    """A step that timed failures (dead letters) instead of readings would flatter the floor."""
    raws = raw_envelopes(250)
    now = clock.now()
    decoded = [
        decode_raw_record(v, record_id="t", record_time=now, format_header=None) for v in raws
    ]
    assert sum(len(r.events) for r in decoded) == 250
    assert not any(r.failures for r in decoded)

    items = [
        b'{"event_id":"e%d","device_id":"d","ts":"2026-11-29T10:00:00Z",' % n
        + b'"received_at":"2026-11-29T10:00:01Z","sensors":{}}'
        for n in range(150)
    ]
    curated = curated_envelopes(items)
    reads = [device_state_reader.read(value) for value in curated]
    assert [len(r.items) for r in reads] == [100, 50]
    assert not any(r.failures for r in reads)
    assert reads[1].positions == [(0, 100, n) for n in range(50)]


def test_the_budget_beside_a_pipeline_run_leaves_out_other_load() -> None:
    one = Result(
        "pipeline",
        "fleetstream, 1 worker",
        readings=1_000_000,
        seconds=45.0,
        cpu_s={"worker": 44.5, "kafka": 4.3, "postgres": 12.2, "redis": 1.3, "other": 9.0},
    )
    lines = budget_lines([("decode", 4.0), ("encode", 6.0)], one, cores=2)

    assert lines[0] == (
        "floor (`python -m bench.floor`): 10.0 µs a reading in library calls "
        "(decode 4.0; encode 6.0)"
    )
    assert "one worker took 44.5 µs a reading, 34.5 of them in our code" in lines[1]
    assert lines[1].endswith("leaving 10.0 for them")
    # 62.3 µs: the outside load ("other") is not the pipeline's.
    assert "62.3 µs of CPU a reading" in lines[2]
    assert "2 cores top out near 32,103 readings/s" in lines[2]
    assert budget_lines([("decode", 4.0)], None, cores=2) == [
        "floor (`python -m bench.floor`): 4.0 µs a reading in library calls (decode 4.0)"
    ]

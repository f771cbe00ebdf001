"""bench.floor: the envelopes it reads and the budget it prints (no services)."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.curated import _reader as device_state_reader
from bench.floor import curated_envelopes, raw_envelopes, report
from schemas.envelopes import decode_raw_record


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
    now = datetime.now(UTC)
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

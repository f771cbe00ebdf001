"""Parsing what load generators and tools print: wrk (ingest.lua), Kafka perf tools, py-spy."""

from __future__ import annotations

import pytest

from bench.baselines.kafka_tools import parse_consumer_summary, parse_producer_summary
from bench.baselines.rows import row_of
from bench.context import one_line
from bench.ingest import parse_wrk
from bench.latency import schedule
from bench.profile import describe, summarize_collapsed


def test_wrk_summary_line() -> None:
    output = (
        "Running 15s test @ http://127.0.0.1:1/v1/readings\n"
        'FLEETBENCH {"accepted": 1500, "other": 3, "requests": 1503, "duration_us": 15000000, '
        '"connect": 0, "read": 1, "write": 0, "timeout": 2, '
        '"p50_us": 20500.0, "p95_us": 40000.0, "p99_us": 61000.5}\n'
    )
    summary = parse_wrk(output)
    assert (summary.accepted, summary.other, summary.socket_errors) == (1500, 3, 3)
    assert summary.seconds == 15
    assert summary.latency.p50 == 20.5
    assert summary.latency.p99 == pytest.approx(61.0005)


def test_producer_performance_last_line() -> None:
    output = (
        "500000 records sent, 99000.2 records/sec (23.6 MB/sec), 600.1 ms avg latency, "
        "1200.0 ms max latency.\n"
        "2000000 records sent, 412345.6 records/sec (98.31 MB/sec), 35.20 ms avg latency, "
        "400.00 ms max latency, 30 ms 50th, 90 ms 95th, 120 ms 99th, 150 ms 99.9th.\n"
    )
    records, rate, latency = parse_producer_summary(output)
    assert records == 2_000_000
    assert rate == 412345.6
    assert (latency.p50, latency.p95, latency.p99) == (30, 90, 120)


def test_consumer_performance_csv() -> None:
    output = (
        "WARNING: something\n"
        "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
        "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
        "2026-11-28 21:00:00:000, 2026-11-28 21:00:04:000, 476.8, 119.2, 2000000, 500000.0, "
        "3000, 1000, 476.8, 2000000.0\n"
    )
    summary = parse_consumer_summary(output)
    assert summary["data.consumed.in.nMsg"] == 2_000_000
    assert summary["fetch.nMsg.sec"] == 2_000_000
    assert "start.time" not in summary


def test_open_loop_schedule() -> None:
    offsets = schedule(5000, 2, 50)
    assert len(offsets) == 200
    assert offsets[1] - offsets[0] == pytest.approx(0.01)


def test_py_spy_collapsed_stacks_summed_by_function() -> None:
    text = (
        "<module> (cli/main.py:5);run_forever (asyncio/base_events.py:10);"
        "take (faust/streams.py:700);decode_json (schemas/validation.py:40) 60\n"
        "<module> (cli/main.py:5);run_forever (asyncio/base_events.py:10);"
        "take (faust/streams.py:712) 30\n"
        "_bootstrap_inner (threading.py:1);_poll_forever (kafka/producer.py:90) 10\n"
        "garbage line\n"
    )
    profile = summarize_collapsed(text)
    assert profile.samples == 100
    assert profile.own[0] == ("decode_json (schemas/validation.py)", 0.6)
    inclusive = dict(profile.inclusive)
    assert inclusive["take (faust/streams.py)"] == 0.9
    assert not any("asyncio" in name or "threading" in name for name in inclusive)
    lines = describe(profile, seconds=1, rate=100)
    assert "GIL in 100% of the samples" in lines[0]


def test_py_spy_without_samples() -> None:
    assert describe(summarize_collapsed(""), seconds=10, rate=100) == [
        "py-spy collected no samples"
    ]


def test_row_of_a_curated_reading_follows_the_json_contract() -> None:
    curated = (
        b'{"schema_version":1,"event_id":"0b6f6a1e-53f5-4c56-9d1e-7a0c3f1f6e2a",'
        b'"device_id":"esp32-1","ts":"2026-11-28T12:00:00Z","received_at":"2026-11-28T12:00:01Z",'
        b'"source":"http","sensors":{"pir":{"motion_detected":true},"ld2410":{"presence":false}},'
        b'"metadata":{"sent_at":1.5},"device_name":"lobby","lag_ms":3}'
    )
    row = row_of(curated)
    assert row.sensor_types == ["ld2410", "pir"]
    assert row.metadata == '{"sent_at":1.5}'
    assert row.ts.tzinfo is not None
    without = row_of(curated.replace(b',"metadata":{"sent_at":1.5}', b""))
    assert without.metadata is None


def test_failures_are_one_short_line() -> None:
    line = one_line(RuntimeError("first line\nlog tail " + "x" * 1000), limit=40)
    assert line.startswith("RuntimeError: first line")
    assert len(line) <= 40
    assert "\n" not in one_line(RuntimeError("a\nb"))

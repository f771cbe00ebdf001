"""The summary's arithmetic: percentiles, rates, what counts as missing, the JSON form."""

from __future__ import annotations

import json

import pytest

from cli.simulator.progress import progress_line
from cli.simulator.tally import Acked, Fleet, StorageCheck, Tally, percentile, summarize

FLEET = Fleet(run_id="r1", seed=7, http_devices=3, mqtt_devices=2)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(list(reversed(values)), 1) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def _tally() -> Tally:
    tally = Tally()
    tally.sending(10, bad=2)
    tally.ack([Acked("d", f"e{n}", 1000.0 + n, 0.010 * (n + 1)) for n in range(7)], bad=0)
    tally.error("http 422", 2)
    tally.error("http 503")
    tally.fail(3)
    return tally


def test_summary_counts_rates_and_ack_latencies() -> None:
    summary = summarize(FLEET, _tally(), elapsed_s=2.0, check=None)
    assert (summary.sent, summary.acked, summary.failed) == (10, 7, 3)
    assert (summary.bad_sent, summary.bad_acked) == (2, 0)
    assert summary.errors == {"http 422": 2, "http 503": 1}
    assert summary.acked_per_s == 3.5
    assert summary.ack_p50_ms == 40.0  # 10..70 ms, the 4th of 7
    assert summary.ack_p99_ms == 70.0
    assert summary.devices == 5
    assert not summary.checked and summary.missing is None and summary.ok


def test_a_missing_acked_reading_makes_the_run_fail() -> None:
    check = StorageCheck(looked_for=7, stored=6, waited_s=60.0, row_latencies_s=[0.5] * 6)
    summary = summarize(FLEET, _tally(), elapsed_s=2.0, check=check)
    assert (summary.stored, summary.missing) == (6, 1)
    assert not summary.ok
    assert summary.row_p50_ms == summary.row_p99_ms == 500.0
    complete = StorageCheck(looked_for=7, stored=7, waited_s=1.0, row_latencies_s=[0.5] * 7)
    assert summarize(FLEET, _tally(), elapsed_s=2.0, check=complete).ok


def test_the_json_summary_carries_every_figure_and_the_verdict() -> None:
    check = StorageCheck(looked_for=7, stored=7, waited_s=1.25, row_latencies_s=[0.2, 0.4])
    document = json.loads(json.dumps(summarize(FLEET, _tally(), 2.0, check).as_dict()))
    assert document["ok"] is True
    assert document["run_id"] == "r1" and document["seed"] == 7
    assert document["errors"] == {"http 422": 2, "http 503": 1}
    assert document["row_p99_ms"] == 400.0
    assert document["check_waited_s"] == pytest.approx(1.25)


def test_the_progress_line_names_stage_counts_rate_and_errors() -> None:
    line = progress_line("sending", _tally(), elapsed_s=12.34, rate=1234.0)
    assert line.startswith("sending")
    for part in ("12.3s", "sent 10", "acked 7", "failed 3", "1,234 acked/s", "http 422 2",
                 "http 503 1"):  # fmt: skip
        assert part in line
    assert "errors: none" in progress_line("sending", Tally(), 0.0, 0.0)

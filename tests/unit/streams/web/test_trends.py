"""The trends ring buffer: differences between samples, an hour kept, workers merged per slot;
and the batch-filled reading → row histogram behind its latency."""

from __future__ import annotations

from collections.abc import Mapping

from streams.metrics import BatchHistogram, Key
from streams.web.trends import SAMPLE_S, Reading, Trends, merge

BOUNDS = (0.5, 1.0, 10.0)


def reading(
    at: float,
    totals: Mapping[Key, float],
    counts: list[int],
    lag: int | None = 5,
    devices: Mapping[str, int] | None = None,
) -> Reading:
    return Reading(
        wall=1_000_000.0 + at,
        monotonic=at,
        totals=totals,
        latency_bounds=BOUNDS,
        latency_counts=counts,
        lag=lag,
        devices=devices,
    )


def trends(keep: int = 360) -> Trends:
    return Trends("fleet.readings.v1", "fleet.deadletter.v1", keep=keep)


OUT: Key = ("produced", "validate", "fleet.readings.v1")
LETTERS: Key = ("produced", "validate", "fleet.deadletter.v1")


def test_a_point_holds_the_rates_and_latency_since_the_previous_sample() -> None:
    buffer = trends()
    assert buffer.latest_devices() is None
    first = reading(0, {OUT: 100, LETTERS: 0}, [5, 0, 0, 0], devices={"online": 2, "offline": 0})
    assert buffer.sample(first) is None
    assert buffer.latest_devices() == {"online": 2, "offline": 0}  # before any point
    totals = {OUT: 300, LETTERS: 20, ("dead_letters", "validate", ""): 20.0}
    point = buffer.sample(
        reading(10, totals, [95, 8, 2, 0], lag=42, devices={"online": 3, "offline": 1})
    )
    assert point is not None
    assert point.readings_out_per_s == 20.0
    assert point.readings_in_per_s == 22.0
    assert point.dead_letters_per_s == 2.0
    # 100 new rows: 90 within 0.5 s, 8 within 1 s, 2 within 10 s
    assert (point.latency_p50_s, point.latency_p99_s) == (0.5, 10.0)
    assert (point.lag, point.devices_online, point.devices_offline) == (42, 3, 1)
    assert buffer.latest_devices() == {"online": 3, "offline": 1}


def test_no_rows_no_latency_and_beyond_the_last_bucket_is_no_number() -> None:
    buffer = trends()
    buffer.sample(reading(0, {}, [0, 0, 0, 0]))
    quiet = buffer.sample(reading(10, {}, [0, 0, 0, 0], lag=None))
    late = buffer.sample(reading(20, {}, [0, 0, 0, 4]))
    assert quiet is not None and late is not None
    assert (quiet.latency_p99_s, quiet.lag) == (None, None)
    assert late.latency_p99_s is None


def test_the_buffer_keeps_the_newest_points_only() -> None:
    buffer = trends(keep=3)
    for step in range(6):
        buffer.sample(reading(step * 10, {OUT: step * 10.0}, [0, 0, 0, 0]))
    points = buffer.points()
    assert [p["at"] for p in points] == [1_000_030.0, 1_000_040.0, 1_000_050.0]
    assert all(p["readings_out_per_s"] == 1.0 for p in points)


def test_merge_adds_rates_and_devices_and_keeps_the_worst_lag_and_latency() -> None:
    slot = 100 * SAMPLE_S
    one = {
        "at": slot + 1,
        "readings_in_per_s": 10.0,
        "readings_out_per_s": 9.0,
        "dead_letters_per_s": 1.0,
        "latency_p50_s": 0.5,
        "latency_p99_s": 1.0,
        "lag": 7,
        "devices_online": 3,
        "devices_offline": None,
    }
    two = {**one, "at": slot + 4, "latency_p99_s": 10.0, "lag": 5, "devices_offline": 2}
    later = {**one, "at": slot + SAMPLE_S + 1}
    merged = merge([[one, later], [two]])
    assert [p["at"] for p in merged] == [slot, slot + SAMPLE_S]
    first = merged[0]
    assert first["workers"] == 2
    assert (first["readings_in_per_s"], first["dead_letters_per_s"]) == (20.0, 2.0)
    assert (first["latency_p99_s"], first["lag"]) == (10.0, 7)
    assert (first["devices_online"], first["devices_offline"]) == (6, 2)


def test_the_batch_histogram_bins_like_prometheus() -> None:
    histogram = BatchHistogram("unit_seconds", "unit", BOUNDS)
    histogram.observe_many([0.5, 0.6, 10.0, 11.0])
    assert histogram.counts() == [1, 1, 1, 1]  # a value on a bound is in that bucket (le)
    (family,) = histogram.collect()
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples["unit_seconds_bucket", "1.0"] == 2.0
    assert samples["unit_seconds_bucket", "+Inf"] == 4.0
    assert samples["unit_seconds_count", None] == 4.0
    assert samples["unit_seconds_sum", None] == 22.1

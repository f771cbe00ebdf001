"""The fleet's profiles and each device's sends: reproducible by seed, at the plan's rates,
shares and bounds."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import replace

import pytest

from cli.simulator.plan import Plan, PlanError
from cli.simulator.schedule import (
    BAD_READING_SHARE,
    Misbehaviour,
    Transport,
    profiles,
    sends,
)

PLAN = Plan(devices=1000, duration_s=100.0, seed=7, rate_per_s=1.0, jitter=0.2)


def test_one_seed_gives_one_fleet_and_schedule_another_seed_another() -> None:
    again = profiles(PLAN)
    assert profiles(PLAN) == again
    assert [list(sends(PLAN, p)) for p in again[:50]] == [
        list(sends(PLAN, p)) for p in profiles(PLAN)[:50]
    ]
    other = replace(PLAN, seed=8)
    assert [p.phase_s for p in profiles(other)] != [p.phase_s for p in again]


def test_a_device_behaves_the_same_in_a_larger_fleet() -> None:
    small = profiles(replace(PLAN, devices=10, mqtt_share=0.0))
    large = profiles(replace(PLAN, devices=10_000, mqtt_share=0.0))
    assert [(p.phase_s, p.skew_s) for p in small] == [(p.phase_s, p.skew_s) for p in large[:10]]


def test_shares_are_exact_counts_of_the_fleet() -> None:
    plan = replace(PLAN, mqtt_share=0.3, bad_share=0.09, offline_share=0.25, burst_share=0.1)
    fleet = profiles(plan)
    assert sum(p.transport is Transport.MQTT for p in fleet) == 300
    bad = [p.misbehaviour for p in fleet if p.misbehaviour is not None]
    assert len(bad) == 90
    assert {kind: bad.count(kind) for kind in Misbehaviour} == dict.fromkeys(Misbehaviour, 30)
    assert sum(p.offline is not None for p in fleet) == 250
    assert sum(p.bursts for p in fleet) == 100


def test_each_device_sends_at_the_planned_rate_with_jittered_intervals() -> None:
    fleet = profiles(PLAN)[:200]
    counts = [len(list(sends(PLAN, p))) for p in fleet]
    assert 98 <= statistics.mean(counts) <= 101  # 1/s for 100 s, minus the phase
    times = [s.due_s for s in sends(PLAN, fleet[0])]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.8 - 1e-9 and max(gaps) <= 1.2 + 1e-9
    assert max(gaps) - min(gaps) > 0.2  # jittered, not a metronome
    assert all(0 <= t < PLAN.duration_s for t in times)  # type: ignore[operator]


def test_a_readings_bound_spreads_the_count_over_the_devices() -> None:
    plan = Plan(devices=7, duration_s=None, readings=100, rate_per_s=50.0)
    counts = [len(list(sends(plan, p))) for p in profiles(plan)]
    assert counts == [15, 15, 14, 14, 14, 14, 14]


def test_readings_due_while_offline_are_sent_when_the_device_comes_back() -> None:
    plan = replace(PLAN, offline_share=1.0, offline_s=10.0, devices=20)
    for profile in profiles(plan):
        assert profile.offline is not None
        start, end = profile.offline
        assert end - start == pytest.approx(10.0)
        planned = list(sends(plan, profile))
        held = [s for s in planned if start <= s.due_s < end]
        assert len(held) >= 8
        assert all(s.send_s == end for s in held)
        assert all(s.send_s == s.due_s for s in planned if s not in held)
        assert [s.send_s for s in planned] == sorted(s.send_s for s in planned)


def test_bursts_add_readings_a_millisecond_apart_in_time_order() -> None:
    plan = replace(PLAN, burst_share=1.0, burst_size=10, burst_every_s=20.0, devices=20)
    steady = replace(plan, burst_share=0.0)
    for bursting, plain in zip(profiles(plan), profiles(steady), strict=True):
        times = [s.due_s for s in sends(plan, bursting)]
        assert times == sorted(times)
        assert len(times) > len(list(sends(steady, plain)))
    times = [s.due_s for p in profiles(plan) for s in sends(plan, p)]
    close = sum(1 for a, b in itertools.pairwise(times) if 0 < b - a < 0.0011)
    assert close >= 20 * 9  # at least one burst of ten per device on average


def test_skew_stays_within_the_bound_and_differs_between_devices() -> None:
    skews = [p.skew_s for p in profiles(replace(PLAN, skew_s=3.0))]
    assert all(-3.0 <= s <= 3.0 for s in skews)
    assert min(skews) < -2.5 and max(skews) > 2.5
    assert all(p.skew_s == 0 for p in profiles(replace(PLAN, skew_s=0.0)))


def test_misbehaving_devices_send_bad_readings_and_good_ones_never() -> None:
    plan = replace(PLAN, bad_share=0.3, devices=300)
    by_kind: dict[Misbehaviour | None, list[bool]] = {}
    for profile in profiles(plan):
        flags = [s.bad for s in sends(plan, profile)]
        by_kind.setdefault(profile.misbehaviour, []).extend(flags)
    assert not any(by_kind[None])
    assert all(by_kind[Misbehaviour.WRONG_TOKEN])
    for kind in (Misbehaviour.MALFORMED, Misbehaviour.OUT_OF_RANGE):
        share = sum(by_kind[kind]) / len(by_kind[kind])
        assert share == pytest.approx(BAD_READING_SHARE, abs=0.05)


def test_a_bad_share_does_not_move_the_good_devices_timings() -> None:
    good = profiles(PLAN)
    mixed = profiles(replace(PLAN, bad_share=0.2))
    for before, after in zip(good[:100], mixed[:100], strict=True):
        assert [s.due_s for s in sends(PLAN, before)] == [s.due_s for s in sends(PLAN, after)]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"devices": 0}, "devices"),
        ({"duration_s": None, "readings": None}, "duration_s or readings"),
        ({"mqtt_share": 1.5}, "mqtt_share"),
        ({"jitter": 1.0}, "jitter"),
        ({"rate_per_s": 0.0}, "rate_per_s"),
        ({"devices": 100, "mqtt_share": 1.0, "mqtt_max_connections": 50}, "mqtt_max_connections"),
        ({"prefix": "bad prefix/"}, "prefix"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(PlanError, match=named):
        Plan(**fields)  # type: ignore[arg-type]

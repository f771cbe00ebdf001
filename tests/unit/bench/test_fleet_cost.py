"""The fleet-cost scenario's in-process worker: every reading reaches the agents' state, and
the report states the ratio against the target."""

from __future__ import annotations

from datetime import timedelta

from bench.fleet_cost import FleetCost, SizeResult, report
from bench.fleet_sim import PHASES, FleetSim
from schemas.settings import Settings
from tests.clock import now


def settings() -> Settings:
    base = Settings()
    return base.model_copy(
        update={"stream": base.stream.model_copy(update={"table_store": "memory"})}
    )


async def test_a_virtual_second_feeds_every_agent_and_registered_devices_are_enriched() -> None:
    sim = FleetSim(settings(), 40, 80, now=now() - timedelta(minutes=10))
    interval = round(sim.settings.stream.rollup_publish_interval_s)
    for second in range(2 * interval):  # two ticks of every rollup slot: every device written
        assert await sim.second() > 0
        if second == interval // 5 - 1:  # one slot's tick, a fifth of the interval
            assert 0 < len(sim.rollups.table.data) < 40, "ticks follow the rollups' schedule"
    topics = sim.settings.topics
    records = sim.ctx.published.records
    assert sim.readings == records[topics.readings] == 80 * 2 * interval
    assert len(sim.status.table.data) == len(sim.rollups.table.data) == 40
    assert records[topics.readings_1m] > 0
    assert all(sim.cpu[phase] > 0 for phase in PHASES if phase != "status timer")
    state = sim.status.state(sim.fleet.devices[0])
    assert state is not None and state.online and state.count == 2 * 2 * interval
    assert sim.last_redis_commands > 0
    enricher = sim.validation.enricher
    assert enricher is not None and enricher.enrichment(sim.fleet.devices[0]) is not None


def test_the_report_gives_the_ratio_of_the_medians_and_says_whether_it_meets_the_target() -> None:
    sizes = [SizeResult(2_000, [30.0, 20.0, 25.0]), SizeResult(100_000, [40.0, 28.0, 29.0])]
    text = "\n".join(report(FleetCost(sizes, 20_000, 5, 3)))
    assert "ratio 100,000 / 2,000 devices: **1.16** (within the 1.2 target)" in text
    sizes[1].us_per_reading = [31.0, 31.0, 31.0]
    assert "**1.24** (above the 1.2 target)" in "\n".join(report(FleetCost(sizes, 20_000, 5, 3)))

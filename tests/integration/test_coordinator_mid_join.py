"""The group coordinator dies while a second worker joins: nothing acked is lost.

The three-broker test failed once so (docs/scaling.md): the first kill took the broker that
coordinated the workers' consumer group while the second worker was joining it. Here that moment
is made on purpose instead of by chance: three brokers of the test's own, one API and one worker
under steady HTTP load; a second worker is started, and the coordinator is killed as soon as the
first worker logs that it is giving its partitions up for the second one's join. Then every
acked reading must reach Postgres exactly once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from connectors.kafka.admin import ensure_topics
from schemas.settings import Settings
from streams.topology import topic_specs
from tests.factories import device_ids
from tests.integration.cluster_tools import Cluster, start_cluster
from tests.integration.fleet import Fleet
from tests.integration.processes import ApiProcess, ServiceProcess, WorkerProcess
from tests.integration.steady_load import Answer, http_device
from tests.integration.test_three_brokers import _answers_200, _own, _raw_leaders, _settings
from tests.support import wait_until

DEVICES = 16
INTERVAL_S = 0.1
WARM_UP_ACKS = 300
REVOKING = "because it is rebalancing"
"""aiokafka's log line when a member learns of a rebalance, just before it revokes its
partitions."""


@pytest.fixture
def cluster(stack_settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(stack_settings, tmp_path / "cluster")


def _coordinator(worker_log: Path) -> int:
    """The group coordinator the worker found last (aiokafka logs each discovery)."""
    found = re.findall(r"Discovered coordinator (\d+) for group", worker_log.read_text())
    assert found, "the worker has not found its group coordinator"
    return int(found[-1])


def _log_has(path: Path, text: str, after: int) -> bool:
    return path.exists() and text in path.read_text(errors="replace")[after:]


async def _stored(db: asyncpg.Connection, ids: list[str]) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT event_id::text AS id, count(*) AS n FROM readings "
        "WHERE event_id = ANY($1::uuid[]) GROUP BY event_id",
        ids,
    )
    return {row["id"]: int(row["n"]) for row in rows}


@pytest.mark.cluster
@pytest.mark.timeout(600)
async def test_coordinator_killed_while_a_second_worker_joins_loses_nothing(
    cluster: Cluster, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = _settings(cluster, tmp_path)
    ensure_topics(cluster.bootstrap, topic_specs(settings))
    first, second = _own(settings, tmp_path, 0), _own(settings, tmp_path, 1)
    logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker-0", "worker-1")}
    api, worker_0 = ApiProcess(first, logs["api"]), WorkerProcess(first, logs["worker-0"])
    worker_1 = WorkerProcess(second, logs["worker-1"])
    started: list[ServiceProcess] = []

    def tails() -> str:
        return "\n---\n".join(process.log_tail(30) for process in started)

    answers: list[Answer] = []
    stop = asyncio.Event()
    try:
        for first_process in (api, worker_0):
            first_process.start()
            started.append(first_process)
        ready = f"http://127.0.0.1:{first.api.port}/health/ready"
        await wait_until(lambda: _answers_200(ready), timeout_s=180, what=tails)
        await wait_until(
            lambda: asyncio.to_thread(_log_has, logs["worker-0"], "Worker ready", 0),
            timeout_s=180,
            what=tails,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.api.port}") as client:
            fleet = Fleet(client)
            ids = device_ids(DEVICES, "join")
            await fleet.enroll(ids)
            load = asyncio.gather(
                *(http_device(client, d, fleet.tokens[d], INTERVAL_S, stop, answers) for d in ids)
            )
            try:

                async def acked(at_least: int, since: int = 0) -> bool:
                    return sum(a.acked for a in answers[since:]) >= at_least

                await wait_until(lambda: acked(WARM_UP_ACKS), timeout_s=120, what=tails)
                coordinator = await asyncio.to_thread(_coordinator, logs["worker-0"])
                mark = logs["worker-0"].stat().st_size
                worker_1.start()
                started.append(worker_1)
                await wait_until(
                    lambda: asyncio.to_thread(_log_has, logs["worker-0"], REVOKING, mark),
                    timeout_s=180,
                    what=tails,
                    poll_s=0.05,
                )
                killed_at = time.monotonic()
                await asyncio.to_thread(cluster.kill, coordinator)
                raw = settings.topics.raw

                def leaders_live() -> bool:
                    leaders = _raw_leaders(cluster, raw).values()
                    return all(leader not in (-1, coordinator) for leader in leaders)

                await wait_until(
                    lambda: asyncio.to_thread(leaders_live), timeout_s=120, what="new leaders"
                )
                print(f"leaders back {time.monotonic() - killed_at:.1f} s after the kill")
                await asyncio.to_thread(cluster.up)
                settled = len(answers)
                await wait_until(lambda: acked(WARM_UP_ACKS, settled), timeout_s=180, what=tails)
            finally:
                stop.set()
                await load
        acked_ids = [a.event_id for a in answers if a.acked]
        missing: list[str] = []

        async def all_stored() -> bool:
            nonlocal missing
            stored = await _stored(db, acked_ids)
            missing = [event_id for event_id in acked_ids if event_id not in stored]
            return not missing

        await wait_until(
            all_stored,
            timeout_s=180,
            what=lambda: f"{len(missing)} of {len(acked_ids)} acked readings\n{tails()}",
        )
        stored = await _stored(db, [a.event_id for a in answers])
        assert {event_id: n for event_id, n in stored.items() if n > 1} == {}
    finally:
        for process in started:
            process.stop()

"""A replicated cluster under load loses a broker, twice: nothing acked is lost or doubled.

Three KRaft brokers of the test's own (replication factor 3, ``min.insync.replicas`` 2, every
topic), two API processes, two workers and two MQTT fronts; devices send readings at a steady
pace over HTTP and MQTT QoS 1. The test ``kill -9``s the active controller, brings it back once
the partitions have new leaders, waits until every in-sync replica set is full again, then
kills the broker that leads most ``fleet.raw.v1`` partitions and brings it back: never two
brokers down at once. Then:

- every reading answered 2xx or PUBACKed (success) is in Postgres exactly once, and no reading
  is there twice;
- a 503 came only while leaders were being elected (sent between a kill and a moment after the
  last partition of ``fleet.raw.v1`` had a live leader again), each with ``Retry-After``, and no
  other failure came at all.

The recovery times are printed (the numbers in bench/RESULTS.md come from this test).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin._config import ConfigResource

from agents.sink_group import group_id
from connectors.kafka.admin import ensure_topics
from schemas.settings import Settings
from streams.topology import topic_specs
from tests.factories import device_ids
from tests.integration.cluster_tools import Cluster, start_cluster
from tests.integration.fleet import Fleet
from tests.integration.mqtt_tools import FrontDevice
from tests.integration.processes import ApiProcess, FrontProcess, ServiceProcess, WorkerProcess
from tests.integration.steady_load import Answer, MqttLoad, http_device
from tests.support import free_port, isolated, wait_until

HTTP_DEVICES = 16
MQTT_DEVICES = 8
INTERVAL_S = 0.1
"""Each device sends ~10 readings/s: ~240 readings/s in all when answers are quick."""
PARTITIONS = 4
ELECTION_GRACE_S = 3.0
"""After the last raw partition has a live leader in the metadata, clients still need a moment
to fetch that metadata; a 503 of a request sent later than this is not the election's."""
WARM_UP_ACKS = 300


@dataclass
class Kill:
    node_id: int
    killed_at: float
    leaders_back_at: float = 0.0
    restarted_at: float = 0.0
    isr_full_at: float = 0.0


@pytest.fixture
def cluster(stack_settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(stack_settings, tmp_path / "cluster")


def _settings(cluster: Cluster, tmp_path: Path) -> Settings:
    settings = isolated(cluster.settings, "brokers", tmp_path / "faust", sink_batch_max=200)
    kafka = settings.kafka.model_copy(update={"partitions": PARTITIONS})
    mqtt = settings.mqtt.model_copy(update={"manage_device_credentials": False})
    return settings.model_copy(update={"kafka": kafka, "mqtt": mqtt})


def _own(settings: Settings, tmp_path: Path, n: int) -> Settings:
    """Ports and a Faust data dir of process ``n``'s own."""
    api = settings.api.model_copy(update={"port": free_port()})
    front = settings.mqtt_front.model_copy(update={"port": free_port(), "health_port": free_port()})
    worker = settings.worker.model_copy(update={"datadir": tmp_path / f"faust-{n}"})
    return settings.model_copy(update={"api": api, "mqtt_front": front, "worker": worker})


async def _answers_200(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url)).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Processes:
    apis: list[Settings]
    fronts: list[Settings]
    started: list[ServiceProcess]

    def logs(self) -> str:
        return "\n---\n".join(process.log_tail(15) for process in self.started)


@pytest.fixture
async def processes(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Processes]:
    settings = _settings(cluster, tmp_path)
    ensure_topics(cluster.bootstrap, topic_specs(settings))
    own = [_own(settings, tmp_path, n) for n in range(2)]
    kinds: tuple[type[ServiceProcess], ...] = (ApiProcess, WorkerProcess, FrontProcess)
    started = [kind(mine, tmp_path / f"{kind.command}-{n}.log") for n, mine in enumerate(own)
               for kind in kinds]  # fmt: skip
    for process in started:
        process.start()
    running = Processes(own, own, started)
    try:
        for mine in own:
            api_ready = f"http://127.0.0.1:{mine.api.port}/health/ready"
            front_ready = f"http://127.0.0.1:{mine.mqtt_front.health_port}/health"
            for url in (api_ready, front_ready):
                await wait_until(partial(_answers_200, url), timeout_s=180, what=running.logs)
        yield running
    finally:
        for process in started:
            process.stop()


def _raw_leaders(cluster: Cluster, topic: str) -> dict[int, int]:
    metadata = cluster.admin().list_topics(topic, timeout=10)
    return {p: meta.leader for p, meta in metadata.topics[topic].partitions.items()}


def _isr_full(cluster: Cluster) -> bool:
    """Every partition of every topic (Kafka's own too) has all three replicas in sync."""
    metadata = cluster.admin().list_topics(timeout=10)
    return all(
        len(meta.isrs) == len(meta.replicas) == 3
        for topic in metadata.topics.values()
        for meta in topic.partitions.values()
    )


async def _poll(condition: object, what: str, timeout_s: float = 120) -> float:
    """Wait until ``condition()`` (a blocking call) holds; the monotonic time it did."""

    async def holds() -> bool:
        return bool(await asyncio.to_thread(condition))  # type: ignore[arg-type]

    await wait_until(holds, timeout_s=timeout_s, what=what, poll_s=0.25)
    return time.monotonic()


async def _kill_and_recover(cluster: Cluster, node_id: int, raw: str) -> Kill:
    kill = Kill(node_id, time.monotonic())
    await asyncio.to_thread(cluster.kill, node_id)

    def leaders_live() -> bool:
        return all(leader not in (-1, node_id) for leader in _raw_leaders(cluster, raw).values())

    kill.leaders_back_at = await _poll(leaders_live, f"new leaders without broker {node_id}")
    kill.restarted_at = time.monotonic()
    await asyncio.to_thread(cluster.up)
    kill.isr_full_at = await _poll(lambda: _isr_full(cluster), "every ISR full again", 180)
    return kill


def _controller(cluster: Cluster) -> int:
    return int(cluster.admin().list_topics(timeout=10).controller_id)


def _busiest_leader(cluster: Cluster, raw: str) -> int:
    counts = Counter(_raw_leaders(cluster, raw).values())
    return counts.most_common(1)[0][0]


async def _stored(db: asyncpg.Connection, ids: list[str]) -> Counter[str]:
    rows = await db.fetch(
        "SELECT event_id::text AS id, count(*) AS n FROM readings "
        "WHERE event_id = ANY($1::uuid[]) GROUP BY event_id",
        ids,
    )
    return Counter({row["id"]: int(row["n"]) for row in rows})


def _first_ack_after(answers: list[Answer], at: float) -> float:
    return min((a.answered_at for a in answers if a.acked and a.sent_at >= at), default=-1.0)


def _report(kills: list[Kill], answers: list[Answer]) -> str:
    """One line per kill: seconds from the kill to the first acked reading sent after it, to a
    live leader for every raw partition, to the last refusal, and to every ISR full again (from
    the kill, and from the restart of the broker)."""
    span = max(a.answered_at for a in answers) - min(a.sent_at for a in answers)
    lines = [
        f"load: {len(answers)} readings in {span:.0f} s, {len(answers) / span:.0f}/s",
        "killed | first ack | raw leaders live | last refusal | every ISR full | from restart",
    ]
    for kill in kills:
        at = kill.killed_at
        refused = [
            a.answered_at
            for a in answers
            if not a.acked and at <= a.answered_at <= kill.restarted_at + 1
        ]
        last_refusal = max(refused) - at if refused else 0.0
        lines.append(
            f"broker {kill.node_id} | {_first_ack_after(answers, at) - at:.2f} s"
            f" | {kill.leaders_back_at - at:.1f} s | {last_refusal:.1f} s"
            f" | {kill.isr_full_at - at:.1f} s | {kill.isr_full_at - kill.restarted_at:.1f} s"
        )
    return "\n".join(lines)


@pytest.mark.cluster
@pytest.mark.timeout(600)
async def test_losing_a_broker_twice_under_load_loses_and_doubles_nothing(
    cluster: Cluster, processes: Processes, db: asyncpg.Connection
) -> None:
    settings = processes.apis[0]
    raw = settings.topics.raw
    http_ids, mqtt_ids = device_ids(HTTP_DEVICES, "http"), device_ids(MQTT_DEVICES, "mqtt")
    answers: list[Answer] = []
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.api.port}")
            )
            for api in processes.apis
        ]
        fleet = Fleet(clients[0])
        await fleet.enroll([*http_ids, *mqtt_ids])
        await _known_everywhere(fleet, clients[1], http_ids)
        await _fronts_know(processes, fleet, mqtt_ids)
        stop, mqtt = asyncio.Event(), MqttLoad(answers, INTERVAL_S)
        for n, device_id in enumerate(mqtt_ids):
            mqtt.start(processes.fronts[n % 2], device_id, fleet.tokens[device_id])
        http = asyncio.gather(
            *(
                http_device(clients[n % 2], d, fleet.tokens[d], INTERVAL_S, stop, answers)
                for n, d in enumerate(http_ids)
            )
        )
        try:

            async def warmed_up() -> bool:
                return sum(a.acked for a in answers) >= WARM_UP_ACKS

            await wait_until(warmed_up, timeout_s=120, what=processes.logs)
            steady_from = time.monotonic()
            first = await asyncio.to_thread(_controller, cluster)
            kills = [await _kill_and_recover(cluster, first, raw)]
            busiest = await asyncio.to_thread(_busiest_leader, cluster, raw)
            kills.append(await _kill_and_recover(cluster, busiest, raw))
            settled = len(answers)

            async def load_after_recovery() -> bool:
                return sum(a.acked for a in answers[settled:]) >= WARM_UP_ACKS

            await wait_until(load_after_recovery, timeout_s=120, what=processes.logs)
        finally:
            stop.set()
            await http
            await asyncio.to_thread(mqtt.finish)
    print(_report(kills, answers))
    await asyncio.to_thread(_assert_every_topic_replicated, cluster)
    _assert_failures_only_during_elections(answers, kills, steady_from)
    await _assert_stored_exactly_once(cluster, db, answers, processes)


async def _known_everywhere(fleet: Fleet, other: httpx.AsyncClient, devices: list[str]) -> None:
    async def known() -> bool:
        for device_id in devices:
            answer = await other.get(
                f"/api/v1/sensors/{device_id}/latest", headers=fleet.headers(device_id)
            )
            if answer.status_code != 200:
                return False
        return True

    await wait_until(known, timeout_s=60, what="the second API to know the devices")


async def _fronts_know(processes: Processes, fleet: Fleet, devices: list[str]) -> None:
    async def accepted(front: Settings, device_id: str) -> bool:
        client = FrontDevice(front, device_id, fleet.tokens[device_id])
        reason = await asyncio.to_thread(client.connect)
        client.close()
        return reason is not None and not reason.is_failure

    for front in processes.fronts:
        for device_id in devices:
            await wait_until(
                partial(accepted, front, device_id),
                timeout_s=60,
                what=f"the front to know {device_id}",
            )


def _assert_every_topic_replicated(cluster: Cluster) -> None:
    """Every topic (the project's, Faust's changelogs and leader topic, Kafka's own) has three
    replicas and takes a write only when two of them have it."""
    admin = cluster.admin()
    topics = admin.list_topics(timeout=10).topics
    assert "__consumer_offsets" in topics  # Kafka's own are checked with the others
    for name, topic in topics.items():
        assert {len(p.replicas) for p in topic.partitions.values()} == {3}, name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics]
    for resource, future in admin.describe_configs(resources, request_timeout=30).items():
        assert future.result()["min.insync.replicas"].value == "2", resource


def _assert_failures_only_during_elections(
    answers: list[Answer], kills: list[Kill], steady_from: float
) -> None:
    failures = [a for a in answers if not a.acked and a.answered_at >= steady_from]
    for failure in failures:
        during = any(
            failure.answered_at >= kill.killed_at
            and failure.sent_at <= kill.leaders_back_at + ELECTION_GRACE_S
            for kill in kills
        )
        assert during, f"a failure outside any leader election: {failure}"
        if failure.channel == "http":
            assert failure.status == 503, failure
            assert failure.retry_after is not None and int(failure.retry_after) >= 1, failure
        else:
            assert failure.status == 0x80, failure  # "unspecified error": send it again
    print(
        f"{len(answers)} readings sent, {sum(a.acked for a in answers)} acked, "
        f"{len(failures)} refused during elections "
        f"({Counter((a.channel, a.status) for a in failures)})"
    )


def _group_lags(cluster: Cluster, settings: Settings) -> str:
    """Where the pipeline stands, for a failure message: each group's lag per partition."""
    groups = {
        settings.worker.app_id: settings.topics.raw,
        group_id(settings, "sink-postgres"): settings.topics.curated,
    }
    lines = []
    probe = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "lag-probe"})
    try:
        for group, topic in groups.items():
            wanted = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            future = cluster.admin().list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, wanted)]
            )[group]
            committed = {tp.partition: tp.offset for tp in future.result(10).topic_partitions}
            lags = [
                probe.get_watermark_offsets(tp, timeout=10)[1] - max(committed[tp.partition], 0)
                for tp in wanted
            ]
            lines.append(f"{group} on {topic}: lag by partition {lags}")
    except (KafkaException, TimeoutError) as exc:
        lines.append(f"lags not read: {exc!r}")
    finally:
        probe.close()
    return "\n".join(lines)


async def _assert_stored_exactly_once(
    cluster: Cluster, db: asyncpg.Connection, answers: list[Answer], processes: Processes
) -> None:
    acked = [a.event_id for a in answers if a.acked]
    assert len(acked) > 2 * WARM_UP_ACKS, "too little was acked to test anything"

    missing = list(acked)

    async def all_stored() -> bool:
        nonlocal missing
        stored = await _stored(db, acked)
        missing = [event_id for event_id in acked if event_id not in stored]
        return not missing

    def described() -> str:
        settings = processes.apis[0]
        return (
            f"{len(missing)} of {len(acked)} acked readings to be stored\n"
            f"{_where_missing(cluster, settings, missing[:MISSING_TRACED])}\n"
            f"{_group_lags(cluster, settings)}\n{processes.logs()}"
        )

    await wait_until(all_stored, timeout_s=180, what=described)
    stored = await _stored(db, [a.event_id for a in answers])
    doubled = {event_id: n for event_id, n in stored.items() if n > 1}
    assert doubled == {}


MISSING_TRACED = 20
"""Missing readings looked for on the topics in a failure message (each read whole)."""


def _where_missing(cluster: Cluster, settings: Settings, event_ids: list[str]) -> str:
    """Which stage lost each of ``event_ids``: its position on the raw topic and on the
    curated topic, or that it is not there (a failure message: the lags alone cannot tell a
    stalled consumer from a record it skipped)."""
    lines = []
    for topic in (settings.topics.raw, settings.topics.curated):
        found = _positions(cluster, topic, event_ids)
        where = ", ".join(f"{event_id} at {found.get(event_id, 'none')}" for event_id in event_ids)
        lines.append(f"on {topic} (partition, offset): {where}")
    return "\n".join(lines)


def _positions(cluster: Cluster, topic: str, event_ids: list[str]) -> dict[str, tuple[int, int]]:
    wanted = [(event_id.encode(), event_id) for event_id in event_ids]
    found: dict[str, tuple[int, int]] = {}
    for partition, offset, value in _read_whole(cluster, topic):
        found.update({event_id: (partition, offset) for key, event_id in wanted if key in value})
    return found


def _read_whole(cluster: Cluster, topic: str) -> Iterator[tuple[int, int, bytes]]:
    """Every record of ``topic`` (up to its end when called): partition, offset, value."""
    probe = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": "missing-probe",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        for partition in range(PARTITIONS):
            low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            probe.assign([TopicPartition(topic, partition, low)])
            position = low
            while position < high and (batch := probe.consume(500, 2)):
                for message in batch:
                    if message.error() is None:
                        position = (message.offset() or 0) + 1
                        yield partition, position - 1, message.value() or b""
    finally:
        probe.close()

"""A three-broker KRaft cluster of a test's own: started by the stack code (``cli/stack``, the
same configuration as ``FLEET_STACK__KAFKA_BROKERS=3 fleetstream stack up``) on free ports under
a temporary stack home, its brokers killed by their own pids, and stopped afterwards. The shared
stack's broker is never touched (only its jars are copied, to skip Maven)."""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from cli.stack import manager, process
from cli.stack.kafka import JARS, Kafka, kafka_services
from cli.stack.probes import tcp_open
from schemas.settings import Settings

BROKERS = 3
BROKER_HEAP = "384m"


PORTS_FROM, PORTS_TO = 20_000, 32_000
"""Below Linux's ephemeral range (32768-60999): a port picked there could be taken as the source
port of any outgoing connection between the pick and the bind, or while a killed broker is
down (seen once: a controller failed to bind at start)."""


def _free_ports(rng: random.Random) -> tuple[list[int], int]:
    """Broker ports, and a base p with p, p+2 and p+4 free (node n's controller listens at
    p + 2(n-1)), all different and none listened on."""
    while True:
        brokers = [rng.randrange(PORTS_FROM, PORTS_TO) for _ in range(BROKERS)]
        base = rng.randrange(PORTS_FROM, PORTS_TO - 2 * BROKERS)
        ports = [*brokers, *(base + 2 * n for n in range(BROKERS))]
        if len(set(ports)) == len(ports) and not any(tcp_open(port) for port in ports):
            return brokers, base


def cluster_settings(stack_settings: Settings, home: Path) -> Settings:
    """``stack_settings`` with a three-broker cluster on free ports under ``home``:
    replication factor 3 and ``min.insync.replicas`` 2, as the broker count derives them."""
    broker_ports, controller_base = _free_ports(random.Random())
    bootstrap = ",".join(f"127.0.0.1:{port}" for port in broker_ports)
    kafka = stack_settings.kafka.model_copy(
        update={"bootstrap_servers": bootstrap, "replication_factor": 3, "min_insync_replicas": 2}
    )
    stack = stack_settings.stack.model_copy(
        update={
            "home": home,
            "kafka_brokers": BROKERS,
            "kafka_controller_port": controller_base,
            "kafka_heap": BROKER_HEAP,
        }
    )
    return stack_settings.model_copy(update={"kafka": kafka, "stack": stack})


@dataclass
class Cluster:
    settings: Settings

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers

    def nodes(self) -> list[Kafka]:
        return kafka_services(self.settings)

    def node(self, node_id: int) -> Kafka:
        return self.nodes()[node_id - 1]

    def kill(self, node_id: int) -> None:
        """SIGKILL one broker (by the pid its service recorded), and wait until it is gone."""
        node = self.node(node_id)
        pid = process.live_pid(node.pid_file, node.signature)
        assert pid is not None, f"{node.name} is not running"
        os.kill(pid, signal.SIGKILL)
        assert process.wait_until(lambda: not process.is_alive(pid), 30), f"{node.name} lives"

    def up(self) -> None:
        """Start whichever brokers are down and wait until every one is healthy."""
        manager.up(self.settings, ["kafka"], progress=lambda line: print(f"cluster: {line}"))

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})


def start_cluster(stack_settings: Settings, home: Path) -> Iterator[Cluster]:
    """A running cluster of three; every broker stopped (by its pid) when the caller is done."""
    settings = cluster_settings(stack_settings, home)
    shared_lib = stack_settings.stack.home / "kafka" / "lib"
    version = settings.stack.kafka_version
    if JARS.ready(shared_lib, version):
        shutil.copytree(shared_lib, home / "kafka" / "lib")
    cluster = Cluster(settings)
    try:
        cluster.up()
        yield cluster
    finally:
        manager.down(settings, ["kafka"], progress=lambda line: print(f"cluster: {line}"))

"""Apache Kafka: one KRaft node (broker + controller), or three, run from the Maven jars.

``FLEET_STACK__KAFKA_BROKERS`` picks one node (service ``kafka``) or a cluster of three (services
``kafka-1``..``kafka-3``, each a broker and a controller: a quorum of three that outlives the loss
of any one). Node n listens at the n-th address of ``FLEET_KAFKA__BOOTSTRAP_SERVERS`` and its
controller at ``FLEET_STACK__KAFKA_CONTROLLER_PORT + 2(n-1)``.

Files: ``<home>/kafka/lib`` (jars + version marker, shared by every node),
``<home>/<node>/config/server.properties`` (rendered from infra/kafka/server.properties.template),
``<home>/<node>/data`` (log.dirs, formatted once), ``<home>/<first node>/cluster-id``. The one-node
and the three-node layouts keep their data apart: switching between them starts an empty cluster.

Secure mode (``FLEET_STACK__SECURE``, ``cli/stack/kafka_security.py``) adds SASL_SSL listeners,
TLS between the nodes, SCRAM principals and ACLs; it keeps its data in ``data-secure`` (the
principals are written at format time), so switching modes starts an empty cluster too.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cli.stack import installer, kafka_security, probes, process
from cli.stack.certs import Pki
from cli.stack.errors import StackError
from cli.stack.installer import Requirement
from cli.stack.maven import Jars
from cli.stack.paths import INFRA_DIR
from cli.stack.process import ProcessSignature
from cli.stack.service import LaunchSpec, Progress, Service
from schemas.settings import Settings

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
STARTED_MARKER = "Kafka Server started"
POM = INFRA_DIR / "kafka" / "pom.xml"
TEMPLATE = INFRA_DIR / "kafka" / "server.properties.template"
LOG4J_CONFIG = INFRA_DIR / "kafka" / "log4j2.properties"
JARS = Jars(
    service="kafka",
    product="Kafka",
    pom=POM,
    version_property="kafka.version",
    main_jar="kafka_2.13-{version}.jar",
    marker=".kafka-version",
    size="~45 MB",
)
JVM_FLAGS = (
    "-Xms256m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


def new_cluster_id() -> str:
    """A KRaft cluster id: 22 chars of URL-safe base64 (no padding) of a random UUID.

    Like Kafka's ``Uuid.randomUuid``, never one that starts with '-' (it would read as an option).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class Node:
    """One KRaft node of the stack: its id (1-based), broker and controller ports."""

    node_id: int
    broker_port: int
    controller_port: int


def cluster_nodes(settings: Settings) -> list[Node]:
    """The nodes ``settings`` describe (see the module docstring for the ports)."""
    count = settings.stack.kafka_brokers
    addresses = [a for a in settings.kafka.bootstrap_servers.split(",") if a.strip()]
    if len(addresses) < count:
        raise StackError(
            f"kafka: FLEET_STACK__KAFKA_BROKERS is {count} but FLEET_KAFKA__BOOTSTRAP_SERVERS "
            f"lists {len(addresses)} address(es); list one per broker or leave it unset"
        )
    first_controller = settings.stack.kafka_controller_port
    nodes = [
        Node(n + 1, probes.parse_host_port(addresses[n])[1], first_controller + 2 * n)
        for n in range(count)
    ]
    broker_ports = {node.broker_port for node in nodes}
    clash = sorted(broker_ports & {node.controller_port for node in nodes})
    if clash or len(broker_ports) < count:
        raise StackError(f"kafka: ports used twice by the brokers and controllers: {clash}")
    return nodes


def quorum_voters(nodes: list[Node]) -> str:
    """``controller.quorum.voters``: ``id@127.0.0.1:port`` of every node."""
    return ",".join(f"{node.node_id}@127.0.0.1:{node.controller_port}" for node in nodes)


def render_server_properties(
    template: str,
    *,
    node: Node,
    voters: str,
    data_dir: Path,
    replication_factor: int = 1,
    min_insync: int = 1,
) -> str:
    """Fill the server.properties template; a missing placeholder raises KeyError."""
    escaped_dir = str(data_dir).replace("\\", "\\\\")
    return Template(template).substitute(
        node_id=node.node_id,
        broker_port=node.broker_port,
        controller_port=node.controller_port,
        voters=voters,
        data_dir=escaped_dir,
        replication_factor=replication_factor,
        min_insync=min_insync,
    )


def kafka_services(settings: Settings) -> list[Kafka]:
    """One :class:`Kafka` service per node (one, or three)."""
    return [Kafka(settings, node.node_id) for node in cluster_nodes(settings)]


class Kafka(Service):
    """Healthy: its current log says "Kafka Server started" and an admin client lists topics."""

    stop_grace_s = 30.0  # a controlled shutdown flushes and closes every partition

    def __init__(self, settings: Settings, node_id: int = 1) -> None:
        super().__init__(settings)
        self.nodes = cluster_nodes(settings)
        self.node = self.nodes[node_id - 1]
        self.name = "kafka" if len(self.nodes) == 1 else f"kafka-{node_id}"

    @property
    def lib(self) -> Path:
        return self.paths.service_dir("kafka") / "lib"

    @property
    def data(self) -> Path:
        return self.dir / ("data-secure" if self.settings.stack.secure else "data")

    @property
    def properties(self) -> Path:
        return self.dir / "config" / "server.properties"

    @property
    def cluster_file(self) -> Path:
        """The cluster id every node is formatted with (kept in the first node's folder)."""
        first = "kafka" if len(self.nodes) == 1 else "kafka-1"
        return self.paths.service_dir(first) / "cluster-id"

    @property
    def broker_port(self) -> int:
        return self.node.broker_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.broker_port, self.node.controller_port)

    @property
    def signature(self) -> ProcessSignature:
        return ProcessSignature("java", (MAIN_CLASS, str(self.properties)))

    def requirements(self) -> tuple[Requirement, ...]:
        return (installer.java(), installer.command("mvn", "maven"))

    def prepare(self, progress: Progress) -> LaunchSpec:
        self.fetch_jars(progress)
        if self.settings.stack.secure:
            Pki.of_home(self.settings.stack.home).ensure(progress)
        self.write_properties()
        self.format_storage(progress)
        heap = f"-Xmx{self.settings.stack.kafka_heap}"
        argv = (
            self._java(),
            *JVM_FLAGS,
            heap,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self._classpath(),
            MAIN_CLASS,
            str(self.properties),
        )
        return LaunchSpec(argv=argv, cwd=self.dir)

    def fetch_jars(self, progress: Progress) -> None:
        """Copy the broker's runtime jars into lib/ with Maven unless they are already there."""
        if JARS.fetch(self.lib, self.settings.stack.kafka_version, progress):
            jars = len(list(self.lib.glob("*.jar")))
            progress(f"kafka: {jars} jars in {self.lib}")

    def write_properties(self) -> None:
        """Render server.properties from the template and the settings (every start)."""
        self.properties.parent.mkdir(parents=True, exist_ok=True)
        replication = min(self.settings.kafka.replication_factor, len(self.nodes))
        text = render_server_properties(
            TEMPLATE.read_text(encoding="utf-8"),
            node=self.node,
            voters=quorum_voters(self.nodes),
            data_dir=self.data,
            replication_factor=replication,
            min_insync=min(self.settings.kafka.min_insync_replicas, replication),
        )
        if self.settings.stack.secure:
            text += kafka_security.broker_properties(
                self.settings, self.node.broker_port, self.node.controller_port
            )
        self.properties.parent.chmod(0o700)  # secure mode: it holds the admin's password
        self.properties.write_text(text, encoding="utf-8")

    def format_storage(self, progress: Progress) -> None:
        """Format data/ once (static voters, so without --standalone)."""
        if (self.data / "meta.properties").exists():
            return
        cluster_file = self.cluster_file
        cluster_file.parent.mkdir(parents=True, exist_ok=True)
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id() + "\n", encoding="ascii")
        cluster_id = cluster_file.read_text(encoding="ascii").strip()
        progress(f"{self.name}: formatting {self.data} (cluster id {cluster_id})")
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [
            self._java(),
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self._classpath(),
            STORAGE_TOOL,
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties),
            "-g",
        ]
        if self.settings.stack.secure:
            argv += kafka_security.scram_format_args(self.settings.stack.home)
        result = process.run(argv, cwd=self.dir, timeout_s=300)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-30:])
            raise StackError(f"{self.name}: formatting {self.data} failed:\n{tail}")

    def healthy(self) -> bool:
        if not process.file_contains(self.log_file, STARTED_MARKER):
            return False
        if not probes.tcp_open(self.broker_port):
            return False
        # log_level 0: librdkafka must not print connection errors into the caller's terminal.
        try:
            self._admin().list_topics(timeout=2)
        except KafkaException:
            return False
        return True

    def after_healthy(self, progress: Progress) -> None:
        """Secure mode: grant each principal its ACLs (idempotent; the first node does it)."""
        if not self.settings.stack.secure or self.node.node_id != 1:
            return
        admin = self._admin()
        bindings = kafka_security.acl_bindings(self.settings)
        for future in admin.create_acls(bindings).values():
            future.result(timeout=30)
        progress(f"{self.name}: {len(bindings)} ACLs in place")

    def _admin(self) -> AdminClient:
        # log_level 0: librdkafka must not print connection errors into the caller's terminal.
        config: dict[str, str | int] = {"bootstrap.servers": self.address, "log_level": 0}
        return AdminClient({**config, **kafka_security.admin_config(self.settings)})

    def _java(self) -> str:
        return shutil.which("java") or "java"

    def _classpath(self) -> str:
        return f"{self.lib}/*"

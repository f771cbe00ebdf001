"""Apache Kafka: one KRaft node (broker + controller) run from the Maven jars.

Files: ``<home>/kafka/lib`` (jars + version marker), ``<home>/kafka/config/server.properties``
(rendered from infra/kafka/server.properties.template), ``<home>/kafka/data`` (log.dirs,
formatted once), ``<home>/kafka/cluster-id``.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path
from string import Template

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from cli.stack import installer, probes, process
from cli.stack.errors import StackError
from cli.stack.installer import Requirement
from cli.stack.maven import Jars
from cli.stack.paths import INFRA_DIR
from cli.stack.process import ProcessSignature
from cli.stack.service import LaunchSpec, Progress, Service

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


def render_server_properties(
    template: str, *, broker_port: int, controller_port: int, data_dir: Path
) -> str:
    """Fill the server.properties template; a missing placeholder raises KeyError."""
    escaped_dir = str(data_dir).replace("\\", "\\\\")
    return Template(template).substitute(
        broker_port=broker_port, controller_port=controller_port, data_dir=escaped_dir
    )


class Kafka(Service):
    """Healthy: its current log says "Kafka Server started" and an admin client lists topics."""

    name = "kafka"
    stop_grace_s = 30.0  # a controlled shutdown flushes and closes every partition

    @property
    def lib(self) -> Path:
        return self.dir / "lib"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def properties(self) -> Path:
        return self.dir / "config" / "server.properties"

    @property
    def broker_port(self) -> int:
        return probes.parse_host_port(self.settings.kafka.bootstrap_servers)[1]

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.broker_port, self.settings.stack.kafka_controller_port)

    @property
    def signature(self) -> ProcessSignature:
        return ProcessSignature("java", (MAIN_CLASS, str(self.properties)))

    def requirements(self) -> tuple[Requirement, ...]:
        return (installer.java(), installer.command("mvn", "maven"))

    def prepare(self, progress: Progress) -> LaunchSpec:
        self.fetch_jars(progress)
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
        text = render_server_properties(
            TEMPLATE.read_text(encoding="utf-8"),
            broker_port=self.broker_port,
            controller_port=self.settings.stack.kafka_controller_port,
            data_dir=self.data,
        )
        self.properties.write_text(text, encoding="utf-8")

    def format_storage(self, progress: Progress) -> None:
        """Format data/ once (static voters, so without --standalone)."""
        if (self.data / "meta.properties").exists():
            return
        cluster_file = self.dir / "cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id() + "\n", encoding="ascii")
        cluster_id = cluster_file.read_text(encoding="ascii").strip()
        progress(f"kafka: formatting {self.data} (cluster id {cluster_id})")
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
        result = process.run(argv, cwd=self.dir, timeout_s=300)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-30:])
            raise StackError(f"kafka: formatting {self.data} failed:\n{tail}")

    def healthy(self) -> bool:
        if not process.file_contains(self.log_file, STARTED_MARKER):
            return False
        if not probes.tcp_open(self.broker_port):
            return False
        # log_level 0: librdkafka must not print connection errors into the caller's terminal.
        try:
            AdminClient({"bootstrap.servers": self.address, "log_level": 0}).list_topics(timeout=2)
        except KafkaException:
            return False
        return True

    def _java(self) -> str:
        return shutil.which("java") or "java"

    def _classpath(self) -> str:
        return f"{self.lib}/*"

"""Kafka's own ``ProducerPerformance`` / ``ConsumerPerformance`` on the shared broker: the
physical reference (what the broker and loopback can move on this machine).

The tools live in ``kafka-tools`` (listed in infra/kafka/pom.xml). A stack whose jars were
fetched before it was listed lacks the jar; the harness then copies the pom's jars into
``<stack home>/bench/kafka-tools`` with Maven (cached in ~/.m2), never touching the broker's lib.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.cpu import CpuMeter, run_with_cpu
from bench.procs import BenchError
from bench.stats import Percentiles, Result
from cli.stack.kafka import JARS
from cli.stack.maven import copy_dependencies
from connectors.kafka.security import client_config
from schemas.settings import Settings

Progress = Callable[[str], None]
RECORD_SIZE = 250
TOOL_TIMEOUT_S = 300.0
PRODUCER_PROPS = ("acks=all", "linger.ms=5", "batch.size=262144", "compression.type=lz4")


def tools_classpath(settings: Settings, progress: Progress) -> str:
    """A classpath holding Kafka's tools, fetching them with Maven when the stack lacks them."""
    home = Path(settings.stack.home)
    version = settings.stack.kafka_version
    lib = home / "kafka" / "lib"
    if (lib / f"kafka-tools-{version}.jar").is_file():
        return f"{lib}/*"
    own = home / "bench" / "kafka-tools"
    if not (own / f"kafka-tools-{version}.jar").is_file():
        progress(f"fetching kafka-tools {version} with Maven into {own}…")
        own.mkdir(parents=True, exist_ok=True)
        done = copy_dependencies(JARS.pom, own, JARS.version_property, version)
        if done.returncode != 0:
            raise BenchError(f"Maven could not fetch kafka-tools:\n{done.stdout[-2000:]}")
    return f"{own}/*"


def parse_producer_summary(output: str) -> tuple[int, float, Percentiles]:
    """(records, records/s, latency percentiles) from ProducerPerformance's last line:
    ``N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
    P ms 50th, Q ms 95th, S ms 99th, T ms 99.9th.``"""
    line = next(ln for ln in reversed(output.splitlines()) if "records sent" in ln)
    parts = [part.strip() for part in line.rstrip(".").split(",")]
    records = int(parts[0].split()[0])
    rate = float(parts[1].split()[0])
    by_label = {part.split()[-1]: float(part.split()[0]) for part in parts[4:]}
    return records, rate, Percentiles(by_label["50th"], by_label["95th"], by_label["99th"])


def parse_consumer_summary(output: str) -> dict[str, float]:
    """ConsumerPerformance's CSV summary (header line + values line) as a dict."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    header_at = next(i for i, ln in enumerate(lines) if ln.startswith("start.time"))
    names = [name.strip() for name in lines[header_at].split(",")]
    values = [value.strip() for value in lines[header_at + 1].split(",")]
    return {
        name: float(value)
        for name, value in zip(names, values, strict=True)
        if name not in ("start.time", "end.time")
    }


def _java(classpath: str, main: str, *args: str) -> list[str]:
    return [shutil.which("java") or "java", "-Xmx512m", "-cp", classpath, main, *args]


def run(settings: Settings, kafka_pid: int, records: int, progress: Progress) -> list[Result]:
    """Produce ``records`` records of RECORD_SIZE bytes, then consume them; one result each."""
    classpath = tools_classpath(settings, progress)
    bootstrap = settings.kafka.bootstrap_servers
    topic = f"bench.kafka-perf.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(client_config(bootstrap))
    admin.create_topics([NewTopic(topic, settings.kafka.partitions, 1)])[topic].result(30)
    try:
        progress(f"Kafka ProducerPerformance: {records:,} records of {RECORD_SIZE} B…")
        produced = _run_tool(
            _java(
                classpath,
                "org.apache.kafka.tools.ProducerPerformance",
                "--topic",
                topic,
                "--num-records",
                str(records),
                "--record-size",
                str(RECORD_SIZE),
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={bootstrap}",
                *PRODUCER_PROPS,
            ),
            kafka_pid,
        )
        count, rate, latency = parse_producer_summary(produced.output)
        producer = Result(
            "baselines",
            "Kafka ProducerPerformance (250 B records)",
            count,
            count / rate,
            latency=latency,
            cpu_s={"load": produced.tool_cpu_s, "kafka": produced.kafka_cpu_s},
            notes=[f"props {' '.join(PRODUCER_PROPS)}; latency is send → ack"],
        )
        progress("Kafka ConsumerPerformance…")
        consumed = _run_tool(
            _java(
                classpath,
                "org.apache.kafka.tools.ConsumerPerformance",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--messages",
                str(records),
                "--group",
                f"bench-perf-{uuid.uuid4().hex[:8]}",
                "--timeout",
                "30000",
            ),
            kafka_pid,
        )
        summary = parse_consumer_summary(consumed.output)
        messages = int(summary["data.consumed.in.nMsg"])
        consumer = Result(
            "baselines",
            "Kafka ConsumerPerformance",
            messages,
            messages / summary["nMsg.sec"],
            steady_rate=summary["fetch.nMsg.sec"],
            cpu_s={"load": consumed.tool_cpu_s, "kafka": consumed.kafka_cpu_s},
            notes=["steady = fetch rate, without the group join"],
        )
    finally:
        admin.delete_topics([topic])[topic].result(30)
    return [producer, consumer]


class _ToolRun:
    def __init__(self, output: str, tool_cpu_s: float, kafka_cpu_s: float) -> None:
        self.output, self.tool_cpu_s, self.kafka_cpu_s = output, tool_cpu_s, kafka_cpu_s


def _run_tool(argv: list[str], kafka_pid: int) -> _ToolRun:
    meter = CpuMeter({"kafka": [kafka_pid]})
    with tempfile.TemporaryFile() as out:
        meter.start()
        code, cpu = run_with_cpu(argv, out, TOOL_TIMEOUT_S)
        kafka = meter.stop()["kafka"]
        out.seek(0)
        output = out.read().decode(errors="replace")
    if code != 0:
        raise BenchError(f"{argv[4]} failed ({code}):\n{output[-2000:]}")
    return _ToolRun(output, cpu, kafka)

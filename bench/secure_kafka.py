"""What secure mode costs on the Kafka hops: the same envelopes produced (as the edges do:
acks=all, idempotent, lz4) and consumed back (as the sinks do) through a plain broker and a
secure one (SASL_SSL, SCRAM-SHA-512, ACLs), both started here from the stack code with the
same heap, in alternating rounds so both see the same machine.

    uv run --frozen python -m bench.secure_kafka [readings] [rounds]

Prints one Markdown table (wall seconds, readings/s, CPU seconds per million readings of the
client process and of the broker) and the secure/plain ratios. Each broker lives under its own
temporary stack home and is stopped by its pid at the end; the shared stack is not touched
(only its Kafka jars are copied).
"""

from __future__ import annotations

import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.cpu import CpuMeter
from bench.data import encoded_items, group_envelopes, new_fleet, readings
from cli.stack import process
from cli.stack.kafka import kafka_services
from cli.stack.private import private_stack
from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.kafka.security import client_config
from schemas.envelopes import raw_envelope
from schemas.settings import KafkaSettings, Settings, get_settings

PARTITIONS = 8
ENVELOPE_ITEMS = 100
HEAP = "512m"


@dataclass
class Broker:
    name: str
    settings: Settings
    kafka: KafkaSettings  # how the client connects
    pid: int


@dataclass
class Round:
    mode: str
    step: str
    seconds: float
    client_cpu_s: float
    broker_cpu_s: float


@contextmanager
def broker(name: str, base: Settings, *, secure: bool) -> Iterator[Broker]:
    home = Path(tempfile.mkdtemp(prefix=f"fleet-bench-{name}-"))
    say = lambda line: print(f"{name}: {line}", file=sys.stderr)  # noqa: E731
    try:
        with private_stack(
            base, home, ["kafka"], secure=secure, progress=say, kafka_heap=HEAP
        ) as settings:
            node = kafka_services(settings)[0]
            pid = process.live_pid(node.pid_file, node.signature)
            if pid is None:
                raise RuntimeError(f"{name}: the broker is not running")
            yield Broker(name, settings, settings.kafka, pid)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: librdkafka's included
    return usage.ru_utime + usage.ru_stime


def _measure(target: Broker, step: str, topic: str, values: list[tuple[int, bytes]]) -> Round:
    meter = CpuMeter({"broker": [target.pid]})
    cpu, start = _cpu_s(), time.monotonic()
    meter.start()
    if step == "produce":
        produce(target, topic, values)
    else:
        consume(target, topic, len(values))
    used = meter.stop()
    return Round(target.name, step, time.monotonic() - start, _cpu_s() - cpu, used["broker"])


def produce(target: Broker, topic: str, values: list[tuple[int, bytes]]) -> None:
    config = {
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 100_000,
    }
    producer = Producer(client_config(target.kafka.bootstrap_servers, target.kafka, **config))
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for partition, value in values:
        while True:
            try:
                producer.produce(topic, value, partition=partition, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) or failed:
        raise RuntimeError(f"produce failed: {failed[:1] or 'undelivered records'}")


def consume(target: Broker, topic: str, expected: int) -> None:
    config = {"group.id": f"fleetstream-bench-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    consumer = Consumer(client_config(target.kafka.bootstrap_servers, target.kafka, **config))
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 300
    try:
        while seen < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    seen += 1
    finally:
        consumer.close()
    if seen != expected:
        raise RuntimeError(f"read {seen} of {expected}")


def rounds(targets: list[Broker], values: list[tuple[int, bytes]], count: int) -> list[Round]:
    results = []
    for n in range(count):
        for target in targets:
            topic = f"bench.secure.{n}.{uuid.uuid4().hex[:6]}"
            spec = TopicSpec(topic, PARTITIONS)
            ensure_topics(target.kafka.bootstrap_servers, [spec], kafka=target.kafka)
            results.append(_measure(target, "produce", topic, values))
            results.append(_measure(target, "consume", topic, values))
    return results


def table(results: list[Round], total_readings: int) -> str:
    per_m = 1_000_000 / total_readings
    lines = [
        "| hop | mode | rounds | seconds (median) | readings/s | client CPU s/M | broker CPU s/M |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    medians: dict[tuple[str, str], tuple[float, float, float]] = {}
    for step in ("produce", "consume"):
        for mode in ("plain", "secure"):
            mine = [r for r in results if r.step == step and r.mode == mode]
            seconds = sorted(r.seconds for r in mine)[len(mine) // 2]
            client = sorted(r.client_cpu_s for r in mine)[len(mine) // 2] * per_m
            brok = sorted(r.broker_cpu_s for r in mine)[len(mine) // 2] * per_m
            medians[(step, mode)] = (seconds, client, brok)
            lines.append(
                f"| {step} | {mode} | {len(mine)} | {seconds:.2f} | "
                f"{total_readings / seconds:,.0f} | {client:.1f} | {brok:.1f} |"
            )
    lines.append("")
    for step in ("produce", "consume"):
        plain, secure = medians[(step, "plain")], medians[(step, "secure")]
        lines.append(
            f"* {step}: secure/plain wall time x{secure[0] / plain[0]:.2f}, client CPU "
            f"x{secure[1] / plain[1]:.2f}, broker CPU x{secure[2] / plain[2]:.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    fleet = new_fleet(2_000)
    items = encoded_items(readings(fleet, total, invalid_every=None), datetime.now(UTC))
    envelopes = list(group_envelopes(items, PARTITIONS, max_items=ENVELOPE_ITEMS))
    values = [(e.partition, raw_envelope(e.items)) for e in envelopes]
    base = get_settings()
    with broker("plain", base, secure=False) as plain, broker("secure", base, secure=True) as sec:
        results = rounds([plain, sec], values, count)
    print(
        f"{total:,} readings in {len(values):,} envelopes of <= {ENVELOPE_ITEMS}, "
        f"{PARTITIONS} partitions, {count} rounds each, alternating"
    )
    print(table(results, total))


if __name__ == "__main__":
    main()

"""``fleetstream tail`` on the real broker and registry: Avro of a schema the project does not
know (decoded by the id in each frame), JSON and text on one topic, filters, ranges, follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

# Public names, re-exported by confluent_kafka.admin without __all__ (mypy strict refuses that).
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

from connectors.schema_registry import SchemaRegistryClient, subject_for
from schemas.settings import Settings
from tests.integration.cli_tools import fleetstream, json_lines
from tests.integration.processes import PROJECT_ROOT
from tests.support import settings_env

AVRO_RECORDS = 100_000
DEVICES = 1000
PROBE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Probe",
    "namespace": "test.cli.tail",
    "fields": [
        {"name": "device_id", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}
BASE = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
"""Record timestamps are BASE + n ms: a past day, whatever day the suite runs."""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _framed(schema_id: int, datum: dict[str, Any]) -> bytes:
    body = BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(PROBE_SCHEMA), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def _produce(bootstrap: str, topic: str, records: list[tuple[str, bytes, int, int]]) -> None:
    """(key, value, partition, timestamp ms) each, acked."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    for key, value, partition, stamp in records:
        while True:
            try:
                producer.produce(topic, value, key, partition=partition, timestamp=stamp)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def _keep_forever(bootstrap: str, topic: str) -> None:
    """No time retention on the test's topic: its records carry fixed timestamps (January
    2026), and the broker's retention check (every 5 minutes) would otherwise delete them
    mid-test on any day more than a retention period later."""
    entry = ConfigEntry("retention.ms", "-1", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _fill(settings: Settings, count: int = AVRO_RECORDS) -> tuple[str, int]:
    """The test's topic, filled: Avro records n = 0.. on partition n % 3, then 10 JSON records
    and one text record on partition 0. Returns the topic and the Avro schema id."""
    topic = settings.topics.readings
    _keep_forever(settings.kafka.bootstrap_servers, topic)
    registry = SchemaRegistryClient(settings.schema_registry.url)
    schema_id = registry.register(subject_for(topic), json.dumps(PROBE_SCHEMA))
    avro = [
        (
            f"dev-{n % DEVICES}",
            _framed(
                schema_id,
                {"device_id": f"dev-{n % DEVICES}", "n": n, "at": BASE + timedelta(seconds=n)},
            ),
            n % 3,
            _ms(BASE) + n,
        )
        for n in range(count)
    ]
    later = _ms(BASE) + count + 1000
    plain = [
        ("json-dev", json.dumps({"device_id": "json-dev", "i": i}).encode(), 0, later + i)
        for i in range(10)
    ]
    _produce(settings.kafka.bootstrap_servers, topic, [*avro, *plain, ("t", b"hello", 0, later)])
    return topic, schema_id


def test_tail_decodes_avro_by_schema_id_and_json_and_filters_by_device_and_range(
    pipeline: Settings,
) -> None:
    topic, schema_id = _fill(pipeline)

    mine = json_lines(fleetstream(pipeline, "tail", topic, "--device", "dev-7", "--limit", "0"))
    assert sorted(record["value"]["n"] for record in mine) == list(range(7, AVRO_RECORDS, DEVICES))
    assert {(r["format"], r["schema_id"], r["key"]) for r in mine} == {("avro", schema_id, "dev-7")}
    first = next(r for r in mine if r["value"]["n"] == 7)
    assert first["value"]["at"] == (BASE + timedelta(seconds=7)).isoformat()  # a logical type
    assert first["timestamp"] == datetime.fromtimestamp((_ms(BASE) + 7) / 1000, UTC).isoformat()

    as_json = json_lines(
        fleetstream(pipeline, "tail", topic, "--device", "json-dev", "--limit", "0")
    )
    assert [(r["format"], r["value"]["i"]) for r in as_json] == [("json", i) for i in range(10)]

    text = json_lines(fleetstream(pipeline, "tail", topic, "--partition", "0", "--from", "end"))
    assert text == []  # from the end of a bounded read: nothing
    last = json_lines(
        fleetstream(
            pipeline,
            "tail",
            topic,
            "--partition",
            "0",
            "--from",
            str(len(range(0, AVRO_RECORDS, 3)) + 10),
        )
    )
    assert last[-1]["format"] == "text" and last[-1]["value"] == "hello"

    assert len(json_lines(fleetstream(pipeline, "tail", topic, "--limit", "5"))) == 5


def test_tail_reads_a_range_of_offsets_or_times(pipeline: Settings) -> None:
    topic, _ = _fill(pipeline, 6_000)

    offsets = json_lines(
        fleetstream(pipeline, "tail", topic, "--partition", "1", "--from", "10", "--to", "20")
    )
    assert [(r["partition"], r["offset"]) for r in offsets] == [(1, o) for o in range(10, 20)]
    assert [r["value"]["n"] for r in offsets] == [3 * o + 1 for o in range(10, 20)]

    start, end = BASE + timedelta(milliseconds=1000), BASE + timedelta(milliseconds=1100)
    timed = json_lines(
        fleetstream(
            pipeline,
            "tail",
            topic,
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            "--limit",
            "0",
        )
    )
    assert sorted(r["value"]["n"] for r in timed) == list(range(1000, 1100))

    refused = fleetstream(pipeline, "tail", topic, "--from", "yesterday-ish", code=2)
    assert "--from" in refused.stderr


def test_tail_follow_prints_new_records_until_its_limit(pipeline: Settings) -> None:
    topic = pipeline.topics.readings
    device = f"follow-{uuid.uuid4().hex[:6]}"
    child = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [
            sys.executable,
            "-m",
            "cli.main",
            "tail",
            topic,
            "--follow",
            "--device",
            device,
            "--limit",
            "3",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings_env(pipeline)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, n = time.monotonic() + 120, 0
        while child.poll() is None:  # it starts at the end: produce until it saw three
            assert time.monotonic() < deadline, "tail --follow did not stop at its limit"
            other = json.dumps({"device_id": "someone-else", "n": n}).encode()
            value = json.dumps({"device_id": device, "n": n}).encode()
            _produce(
                pipeline.kafka.bootstrap_servers,
                topic,
                [
                    ("x", other, n % 3, _ms(datetime.now(UTC))),
                    (device, value, n % 3, _ms(datetime.now(UTC))),
                ],
            )
            n += 1
            try:
                child.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                continue
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert len(records) == 3
    assert {r["value"]["device_id"] for r in records} == {device}
    numbers = [r["value"]["n"] for r in records]
    assert len(set(numbers)) == 3

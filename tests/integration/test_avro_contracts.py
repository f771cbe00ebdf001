"""Avro on fleet.readings.v1, decoded by clients that know nothing of fleetstream.

What the README's "Consuming fleetstream topics" section promises, followed literally: a plain
confluent-kafka + fastavro script run in an isolated interpreter (``python -I`` from another
folder: fleetstream cannot be imported) must see every posted reading, once per event id, with
the values that were posted; Debian's kcat (which cannot decode Avro) sees every record with its
device_id key, on murmur2's partition, framed. Also: the
registry holds the contracts at BACKWARD and refuses an incompatible change; a worker whose
registry is unreachable stops at start with a message naming it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka.partitioner import partition_for
from connectors.schema_registry import (
    SchemaRegistryError,
    client_for,
    contract_topics,
    register_contracts,
    subject_for,
)
from schemas.avro_codec import CONTRACTS, schema_json
from schemas.avro_compat import history
from schemas.settings import Settings
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.kafka_tools import end_offsets
from tests.integration.processes import WorkerProcess
from tests.integration.readings_topic import readings_records
from tests.support import free_port, wait_until

CONSUMER = Path(__file__).parent / "consumers" / "plain_avro_consumer.py"
INCOMPATIBLE = Path(__file__).parents[1] / "avro_cases" / "readings.incompatible.avsc"
TIMEOUT_S = 90.0
LOCATION = {"building": "A", "floor": 2}


async def _post_readings(fleet: Fleet, devices: list[str]) -> dict[str, dict[str, Any]]:
    """Post 10 readings per device; event_id -> the reading that was posted."""
    await fleet.enroll(
        devices, name="Lobby", profile="esp32", tags=["lobby"], metadata={"location": LOCATION}
    )
    posted: dict[str, dict[str, Any]] = {}
    for device_id in devices:
        batch = [reading(device_id, n) for n in range(10)]
        batch[0]["metadata"] = {"floor": 2, "wing": "east", "ok": True, "ratio": 0.5}
        response = await fleet.post(batch)
        assert response.status_code == 202, response.text
        posted.update(zip(response.json()["event_ids"], batch, strict=True))
    return posted


async def _wait_for_records(settings: Settings, count: int, worker: WorkerProcess) -> None:
    topic = settings.topics.readings

    async def arrived() -> bool:
        return end_offsets(settings.kafka.bootstrap_servers, topic, settings.kafka.partitions) >= (
            count
        )

    await wait_until(arrived, timeout_s=TIMEOUT_S, what=lambda: f"records\n{worker.log_tail()}")


def _kcat_keys(settings: Settings) -> list[tuple[str, int, int]]:
    """(key, partition, first byte of the value) of every record, read with Debian's kcat.

    Debian builds kcat without libserdes, so it cannot decode Avro (``-s value=avro`` answers
    "This build of kcat lacks Avro/Schema-Registry support"); it still shows keys, partitions
    and the framing's magic byte (the first byte of ``%s``).
    """
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by `fleetstream stack up` (the apicurio service)"
    argv = [kcat, "-C", "-b", settings.kafka.bootstrap_servers, "-t", settings.topics.readings]
    argv += ["-e", "-q", "-D", "", "-f", "%k\\t%p\\t%S\\t%s\\n"]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr
    found = []
    rest = done.stdout
    while rest:  # "<key>\t<partition>\t<size>\t<size bytes of value>\n", values are binary
        key, partition, size, rest = rest.split(b"\t", 3)
        value, rest = rest[: int(size)], rest[int(size) + 1 :]
        found.append((key.decode(), int(partition), value[0]))
    return found


def _plain_consumer(settings: Settings, cwd: Path) -> list[dict[str, Any]]:
    argv = [
        sys.executable,
        "-I",  # isolated: neither the checkout nor PYTHONPATH is on sys.path
        str(CONSUMER),
        "--bootstrap",
        settings.kafka.bootstrap_servers,
        "--topic",
        settings.topics.readings,
        "--registry",
        settings.schema_registry.url,
    ]
    done = subprocess.run(  # noqa: S603 - our script, fixed arguments
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env={}
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_independent_clients_decode_every_posted_reading(
    pipeline: Settings, fleet: Fleet, worker: WorkerProcess, tmp_path: Path
) -> None:
    devices = device_ids(3)
    posted = await _post_readings(fleet, devices)
    await _wait_for_records(pipeline, len(posted), worker)

    plain = _plain_consumer(pipeline, tmp_path)
    by_event = {record["value"]["event_id"]: record for record in plain}
    assert len(plain) == len(posted) and by_event.keys() == posted.keys()
    for event_id, record in by_event.items():
        body, value = posted[event_id], record["value"]
        assert record["key"] == body["device_id"] == value["device_id"]
        assert value["ts"] == body["timestamp"]  # both ISO 8601 in UTC
        assert (
            value["sensors"]["mq134"]["gas_concentration"]
            == (body["sensors"]["mq134"]["gas_concentration"])
        )
        assert value["sensors"]["ld2410"]["distance_cm"] == body["sensors"]["ld2410"]["distance_cm"]
        assert value["sensors"]["pir"] == body["sensors"]["pir"]
        assert value["sensors"]["equipment"] is None
        assert value["metadata"] == body.get("metadata")
        assert (value["device_name"], value["profile"], value["tags"]) == (
            "Lobby",
            "esp32",
            ["lobby"],
        )
        assert json.loads(value["location"]) == LOCATION
        assert value["source"] == "http" and value["lag_ms"] >= 0

    # The helper other tests use to read the topic in its JSON contract's shape.
    shaped = {record["event_id"]: record for record in readings_records(pipeline)}
    assert shaped.keys() == posted.keys()
    for event_id, record in shaped.items():
        assert record["sensors"] == posted[event_id]["sensors"]
        assert record["location"] == LOCATION and record["ts"].endswith("Z")

    keys = _kcat_keys(pipeline)
    assert len(keys) == len(posted)
    for key, partition, first_byte in keys:
        assert partition == partition_for(key, pipeline.kafka.partitions)  # README: murmur2
        assert first_byte == 0  # the Confluent framing's magic byte


def test_registry_holds_the_contracts_at_backward_and_refuses_a_breaking_change(
    pipeline: Settings,
) -> None:
    client = client_for(pipeline)
    ids = register_contracts(pipeline)
    assert ids == register_contracts(pipeline)  # idempotent: same schemas, same ids
    for contract, topic in contract_topics(pipeline.topics).items():
        subject = subject_for(topic)
        assert client.compatibility(subject) == "BACKWARD"
        assert json.loads(client.schema(ids[subject])) == json.loads(schema_json(contract))

    subject = subject_for(pipeline.topics.readings)
    breaking = INCOMPATIBLE.read_text("utf-8")
    assert client.is_compatible(subject, breaking) is False
    with pytest.raises(SchemaRegistryError):
        client.register(subject, breaking)
    assert client.lookup(subject, breaking) is None

    # Every kept version can be followed by the current one, in the registry's judgement too.
    for contract in CONTRACTS:
        for old in history(contract):
            evolving = f"{pipeline.topics.raw}-history-{old.stem}-value"
            client.set_compatibility(evolving)
            client.register(evolving, old.read_text("utf-8"))
            assert client.is_compatible(evolving, schema_json(contract)), old.name


def test_workers_starting_at_once_all_get_the_first_versions_id(pipeline: Settings) -> None:
    """Apicurio refuses all but one concurrent first registration of a subject with 409; each
    worker must still get the id (one of two benchmark workers once stopped on it)."""
    client = client_for(pipeline)
    schema = schema_json("readings")
    for attempt in range(3):  # a few fresh subjects: the race does not show every time
        subject = f"{pipeline.topics.readings}-race{attempt}-value"
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(client.register, [subject] * 8, [schema] * 8))
        assert len(set(ids)) == 1, ids
        assert client.lookup(subject, schema) == ids[0]


async def test_worker_stops_at_start_when_the_registry_is_unreachable(
    pipeline: Settings, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    settings = pipeline.model_copy(
        update={
            "schema_registry": pipeline.schema_registry.model_copy(
                update={"url": nowhere, "timeout_s": 1.0}
            )
        }
    )
    process = WorkerProcess(settings, tmp_path / "worker.log")
    process.start()
    try:

        async def stopped() -> bool:
            return not process.running

        await wait_until(stopped, timeout_s=60, what=lambda: f"worker exit\n{process.log_tail()}")
        log = process.log_tail(200)
        assert "SchemaRegistryError" in log and nowhere in log, log
    finally:
        process.stop()

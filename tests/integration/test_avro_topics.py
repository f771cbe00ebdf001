"""Every analytics topic in Avro, read by a consumer that knows nothing of fleetstream.

One worker run fills the five topics (readings, a status transition per device, an alert, the
rollups of the gas readings, a dead letter); the plain confluent-kafka + fastavro script of the
README (``consumers/plain_avro_consumer.py``, run isolated: ``python -I``, another folder, no
environment) decodes each through the registry. A topic kept in JSON has no schema under its
subject, even one registered before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.schema_registry import (
    client_for,
    contract_topics,
    install_contracts,
    register_contracts,
    subject_for,
)
from schemas.avro_codec import Contract, framed_schema_id, schema_json
from schemas.contract_wire import WIRE, encode_alert, encode_dead_letter, encode_status
from schemas.settings import Settings
from streams.flow_engine.examples import GAS_ABOVE_500
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, Fleet
from tests.integration.kafka_tools import end_offsets, produce
from tests.integration.processes import WorkerProcess
from tests.integration.stream_core import core_settings
from tests.support import wait_until
from tests.unit.schemas.test_contract_wire import ALERT, CHANGE, LETTER

CONSUMER = Path(__file__).parent / "consumers" / "plain_avro_consumer.py"
TIMEOUT_S = 120.0
NOT_JSON = b"\x01 not json at all"


@pytest.fixture
def pipeline(pipeline: Settings) -> Settings:
    return core_settings(pipeline, rollup_publish_interval_s=1.0)


def plain_consumer(settings: Settings, topic: str, cwd: Path) -> list[dict[str, Any]]:
    argv = [sys.executable, "-I", str(CONSUMER), "--bootstrap", settings.kafka.bootstrap_servers]
    argv += ["--topic", topic, "--registry", settings.schema_registry.url]
    done = subprocess.run(  # noqa: S603 - our script, fixed arguments
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env={}
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def gas(device_id: str, n: int, ppm: float) -> dict[str, Any]:
    """A reading of now: its window is still open, so it is in a rollup (the rollup agent
    takes "now" from the readings' receive times)."""
    body = reading(device_id, n, {"mq134": {"gas_concentration": ppm}})
    body["timestamp"] = datetime.now(UTC).isoformat()
    return body


async def test_an_independent_consumer_decodes_each_of_the_five_topics(
    pipeline: Settings, fleet: Fleet, worker: WorkerProcess, tmp_path: Path
) -> None:
    devices = device_ids(2)
    await fleet.enroll(devices)
    flow = {**GAS_ABOVE_500, "match": {"devices": devices}}
    created = await fleet.client.post(
        "/api/v1/admin/flows", json={"flow_id": f"gas-{uuid.uuid4().hex[:8]}", "definition": flow},
        headers=ADMIN,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    posted = [gas(devices[0], 0, 20.0), gas(devices[1], 1, 30.0), gas(devices[0], 2, 612.0)]
    for body in posted:
        assert (await fleet.post(body)).status_code == 202
    produce(pipeline.kafka.bootstrap_servers, pipeline.topics.raw, [(b"x", NOT_JSON)])

    topics = contract_topics(pipeline.topics)
    wanted: dict[Contract, int] = {
        "readings": 3,
        "device-status": 2,
        "alerts": 1,
        "readings-1m": 2,
        "deadletter": 1,
    }

    counts: dict[Contract, int] = {}

    async def filled() -> bool:
        for contract in wanted:
            counts[contract] = end_offsets(
                pipeline.kafka.bootstrap_servers, topics[contract], pipeline.kafka.partitions
            )
        return all(counts[c] >= n for c, n in wanted.items())

    await wait_until(
        filled, timeout_s=TIMEOUT_S, what=lambda: f"records {counts}\n{worker.log_tail()}"
    )
    read = {c: plain_consumer(pipeline, topics[c], tmp_path) for c in wanted}

    gas_values = sorted(
        r["value"]["sensors"]["mq134"]["gas_concentration"] for r in read["readings"]
    )
    assert gas_values == [20.0, 30.0, 612.0]
    status = [r["value"] for r in read["device-status"] if r["value"] is not None]
    assert {(s["device_id"], s["seq"], s["online"], s["reason"]) for s in status} == {
        (device, 1, True, "reading") for device in devices
    }
    (alert,) = [r["value"] for r in read["alerts"]]
    assert (alert["device_id"], alert["state"], alert["severity"]) == (
        devices[0],
        "fired",
        "critical",
    )
    assert alert["value"] == 612.0 and alert["rule_name"] == GAS_ABOVE_500["name"]
    assert alert["started_at"] and alert["detected_at"]
    rollups = {
        (r["value"]["device_id"], r["value"]["field"]): r["value"] for r in read["readings-1m"]
    }
    assert rollups[(devices[1], "mq134.gas_concentration")]["max"] == 30.0
    assert rollups[(devices[0], "mq134.gas_concentration")]["max"] == 612.0
    (letter,) = [r["value"] for r in read["deadletter"]]
    assert (letter["stage"], letter["original"]) == ("validate", NOT_JSON.hex())
    for contract in wanted:  # what the consumer read is what the registry holds for the topic
        subject = subject_for(topics[contract])
        assert client_for(pipeline).lookup(subject, schema_json(contract)) is not None, subject


def test_a_topic_kept_in_json_has_no_schema_under_its_subject(pipeline: Settings) -> None:
    client = client_for(pipeline)
    alerts_subject = subject_for(pipeline.topics.alerts)
    register_contracts(pipeline)  # as a previous release left it: every subject Avro
    assert client.versions(alerts_subject)
    kept = pipeline.model_copy(
        update={
            "schema_registry": pipeline.schema_registry.model_copy(
                update={"json_contracts": ["alerts"]}
            )
        }
    )
    try:
        ids = install_contracts(kept)
        assert client.versions(alerts_subject) == []
        assert encode_alert(ALERT)[:1] == b"{"  # JSON, and no Avro schema claims otherwise
        assert framed_schema_id(encode_status(CHANGE)) == ids["device-status"]
        assert framed_schema_id(encode_dead_letter(LETTER)) == ids["deadletter"]
        assert "alerts" not in ids
        assert alerts_subject not in register_contracts(kept)
        assert client.versions(alerts_subject) == []
    finally:
        WIRE.reset()

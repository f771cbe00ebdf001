"""The ingest route without a broker: a fake producer records what would be sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from api.app import create_app
from connectors.kafka.batcher import BatcherLimits, EnvelopeBatcher
from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure
from connectors.kafka.partitioner import partition_for
from connectors.kafka.producer import Record
from schemas.envelopes import decode_raw_record
from schemas.events import RawEvent
from schemas.settings import GenericSettings, Settings
from tests import clock
from tests.factories import reading


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Record]] = []
        self.fail_with: Exception | None = None

    async def produce_all(self, topic: str, records: Sequence[Record]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent += [(topic, record) for record in records]

    async def partition_count(self, topic: str) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        return PARTITIONS

    async def ping(self, timeout_s: float = 2.0) -> bool:
        return self.fail_with is None


PARTITIONS = 4


def items(record: Record) -> list[RawEvent]:
    assert record.value is not None
    decoded = decode_raw_record(
        record.value, record_id="t", record_time=clock.now(), format_header=None
    )
    assert not decoded.failures
    return list(decoded.events)


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
async def client(producer: FakeProducer) -> AsyncIterator[httpx.AsyncClient]:
    # Unauthenticated (development) ingest: these tests are about envelopes and answers, and
    # write for several devices; authentication is tested in test_api_edge.py.
    base = Settings()
    settings = base.model_copy(
        update={
            "api": base.api.model_copy(update={"max_batch_items": 5, "max_body_bytes": 4096}),
            "auth": base.auth.model_copy(update={"allow_unauthenticated_ingest": True}),
            "generic": GenericSettings(max_fields_per_sensor=4, max_name_length=8),
        }
    )
    app = create_app(settings, clock=clock.now)
    app.state.producer = producer  # no lifespan: nothing connects to Kafka
    app.state.batcher = EnvelopeBatcher(producer, "fleet.raw.v1", PARTITIONS, BatcherLimits(0.001))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        yield http


async def test_one_reading_is_produced_in_an_envelope_on_its_devices_partition(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    response = await client.post("/v1/readings", json=reading("esp32-a", 1))
    assert response.status_code == 202
    (event_id,) = response.json()["event_ids"]
    ((topic, record),) = producer.sent
    assert topic == "fleet.raw.v1"
    assert record.partition == partition_for("esp32-a", PARTITIONS)
    (event,) = items(record)
    assert event.event_id == event_id
    assert event.device_id == "esp32-a"
    assert event.source == "http"
    assert json.loads(bytes(event.payload))["sensors"]["pir"] == {"motion_detected": False}


async def test_batch_is_split_per_partition_keeping_each_devices_order(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    batch = [reading(f"esp32-{n % 3}", n) for n in range(5)]
    response = await client.post("/v1/readings", json=batch)
    assert response.status_code == 202
    accepted = response.json()["event_ids"]
    produced: list[RawEvent] = []
    for _, record in producer.sent:
        events = items(record)
        assert {partition_for(e.device_id, PARTITIONS) for e in events} == {record.partition}
        produced += events
    assert sorted(e.event_id for e in produced) == sorted(accepted)
    by_device = [e.event_id for e in produced if e.device_id == "esp32-0"]
    assert by_device == [accepted[0], accepted[3]]


async def test_concurrent_requests_share_envelopes(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    bodies = [reading("esp32-a", n) for n in range(20)]
    responses = await asyncio.gather(*(client.post("/v1/readings", json=b) for b in bodies))
    assert all(response.status_code == 202 for response in responses)
    produced = [event for _, record in producer.sent for event in items(record)]
    assert len(produced) == 20
    assert len(producer.sent) < 20


async def test_idempotency_key_gives_the_same_event_ids(client: httpx.AsyncClient) -> None:
    batch = [reading("esp32-a", n) for n in range(2)]
    headers = {"Idempotency-Key": "abc"}
    first = await client.post("/v1/readings", json=batch, headers=headers)
    again = await client.post("/v1/readings", json=batch, headers=headers)
    fresh = await client.post("/v1/readings", json=batch)
    assert first.json()["event_ids"] == again.json()["event_ids"]
    assert set(first.json()["event_ids"]).isdisjoint(fresh.json()["event_ids"])


async def test_two_devices_reusing_an_idempotency_key_get_different_event_ids(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "boot-1"}
    a = await client.post("/v1/readings", json=reading("esp32-a", 0), headers=headers)
    b = await client.post("/v1/readings", json=reading("esp32-b", 0), headers=headers)
    assert a.json()["event_ids"] != b.json()["event_ids"]


async def test_invalid_field_is_named_in_a_problem(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    bad = reading("esp32-a", sensors={"ld2410": {"presence": True, "moving_energy": 101}})
    response = await client.post("/v1/readings", json=bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert body["errors"][0]["field"] == "sensors.ld2410.moving_energy"
    assert producer.sent == []


async def test_a_generic_sensor_over_the_settings_bounds_is_a_422_naming_it(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    at_bound = {f"f{n}": n for n in range(4)}
    accepted = await client.post(
        "/v1/readings", json=reading("esp32-a", sensors={"generic": at_bound})
    )
    assert accepted.status_code == 202, accepted.text
    sent = len(producer.sent)
    for generic, field in (
        ({**at_bound, "f4": 4}, "sensors.generic"),
        ({"a" * 9: 1}, f"sensors.generic.{'a' * 9}"),
    ):
        over = reading("esp32-a", sensors={"generic": generic})
        response = await client.post("/v1/readings", json=over)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
        lines = json.dumps(over).encode() + b"\n"
        ndjson = {"Content-Type": "application/x-ndjson"}
        response = await client.post("/v1/readings", content=lines, headers=ndjson)
        assert response.status_code == 422, response.text
    assert len(producer.sent) == sent


async def test_batch_errors_name_each_bad_item(client: httpx.AsyncClient) -> None:
    batch = [reading("esp32-a", 0), {"device_id": "esp32-a"}, {"sensors": {}}]
    response = await client.post("/v1/readings", json=batch)
    assert response.status_code == 422
    assert {error["index"] for error in response.json()["errors"]} == {1, 2}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b"[]", "application/json", 422),
        (json.dumps([reading("d", n) for n in range(6)]).encode(), "application/json", 422),
        (b"x" * 5000, "application/json", 413),
        (json.dumps(reading("d")).encode(), "text/plain", 415),
    ],
)
async def test_bad_requests_get_problems(
    client: httpx.AsyncClient,
    producer: FakeProducer,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    response = await client.post(
        "/v1/readings", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("error", "status"),
    [(KafkaUnavailable("broker down"), 503), (ProducerBackpressure("queue full"), 429)],
)
async def test_kafka_trouble_is_never_a_202(
    client: httpx.AsyncClient, producer: FakeProducer, error: Exception, status: int
) -> None:
    producer.fail_with = error
    response = await client.post("/v1/readings", json=reading("esp32-a"))
    assert response.status_code == status
    assert response.headers["retry-after"] == "2"


async def test_readiness_follows_the_broker(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    producer.fail_with = KafkaUnavailable("down")
    assert (await client.get("/health/ready")).status_code == 503
    assert (await client.get("/health")).status_code == 200

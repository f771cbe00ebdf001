"""The HTTP edge without a broker: device auth on ingest, NDJSON, Idempotency-Key conflicts,
rate limits, the concurrency bound, request ids, metrics, bad input, and the seed routes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from connectors.kafka.batcher import BatcherLimits, EnvelopeBatcher
from connectors.kafka.producer import Record
from connectors.redis.idempotency import Claim, IdempotencyUnavailable
from schemas.devices import Device, encode_device, hash_token
from schemas.envelopes import decode_raw_record
from schemas.events import RawEvent
from schemas.settings import DEV_ADMIN_TOKEN, MetricsSettings, RateLimit, Settings
from tests import clock
from tests.factories import reading
from tests.unit.api.test_readings import FakeProducer
from tests.unit.registry_fakes import StaticCache

TOKEN_A = "token-of-device-a-0123"  # noqa: S105 - a test token
TOKEN_CAM = "token-of-camera-0123"  # noqa: S105 - a test token
TOKEN_EQ = "token-of-equipment-0123"  # noqa: S105 - a test token
TOKEN_B = "token-of-device-b-0123"  # noqa: S105 - a test token
A = {"X-API-Key": TOKEN_A}
NOW = clock.now()


class MemoryIdempotency:
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}
        self.down = False

    async def claim(self, scope: str, key: str, digest: str) -> Claim:
        if self.down:
            raise IdempotencyUnavailable("redis down")
        stored = self.keys.setdefault((scope, key), digest)
        if stored is digest:
            return Claim.FIRST
        return Claim.RETRY if stored == digest else Claim.CONFLICT

    async def ping(self) -> bool:
        return not self.down


class SlowProducer(FakeProducer):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def produce_all(self, topic: str, records: Sequence[Record]) -> None:
        await self.release.wait()
        await super().produce_all(topic, records)


def _device(device_id: str, token: str, profile: str | None = None) -> bytes:
    return encode_device(
        Device(
            device_id=device_id,
            token_hash=hash_token(token),
            profile=profile,
            created_at=NOW,
            updated_at=NOW,
        )
    )


def _settings(**api: Any) -> Settings:
    base = Settings()
    limits = {"max_batch_items": 5, "max_body_bytes": 20_000, **api}
    return base.model_copy(update={"api": base.api.model_copy(update=limits)})


def _events(producer: FakeProducer) -> list[RawEvent]:
    events: list[RawEvent] = []
    for _, record in producer.sent:
        assert record.value is not None
        decoded = decode_raw_record(
            record.value, record_id="t", record_time=NOW, format_header=None
        )
        events += decoded.events
    return events


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def idempotency() -> MemoryIdempotency:
    return MemoryIdempotency()


@pytest.fixture
def settings() -> Settings:
    return _settings(
        rate_limit_profiles={"camera": RateLimit(per_s=0.001, burst=2)},
    )


@pytest.fixture
async def client(
    settings: Settings, producer: FakeProducer, idempotency: MemoryIdempotency
) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(settings, producer, idempotency) as http:
        yield http


def _client(
    settings: Settings,
    producer: FakeProducer,
    idempotency: MemoryIdempotency | None = None,
    devices: Sequence[tuple[str, str]] = (),
) -> httpx.AsyncClient:
    app = create_app(settings, clock=clock.now)
    cache = StaticCache()
    cache.index.apply(b"esp32-a", _device("esp32-a", TOKEN_A))
    cache.index.apply(b"esp32-b", _device("esp32-b", TOKEN_B))
    cache.index.apply(b"cam-1", _device("cam-1", TOKEN_CAM, profile="camera"))
    cache.index.apply(b"PUMP-A1-001", _device("PUMP-A1-001", TOKEN_EQ))
    for device_id, token in devices:
        cache.index.apply(device_id.encode(), _device(device_id, token))
    app.state.device_cache = cache
    app.state.producer = producer  # no lifespan: nothing connects to Kafka or Redis
    app.state.batcher = EnvelopeBatcher(producer, "fleet.raw.v1", 4, BatcherLimits(0.001))
    app.state.idempotency = idempotency
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://fleet.test")


# ---- authentication ----------------------------------------------------------------------------


async def test_ingest_needs_the_devices_own_token(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    body = reading("esp32-a", 1)
    assert (await client.post("/v1/readings", json=body)).status_code == 401
    wrong = await client.post("/v1/readings", json=body, headers={"X-API-Key": "nope-nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert producer.sent == []
    bearer = {"Authorization": f"Bearer {TOKEN_A}"}
    assert (await client.post("/v1/readings", json=body, headers=bearer)).status_code == 202
    assert (await client.post("/v1/readings", json=body, headers=A)).status_code == 202
    assert [e.device_id for e in _events(producer)] == ["esp32-a", "esp32-a"]


async def test_a_batch_with_another_devices_reading_is_403_naming_it(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    batch = [reading("esp32-a", 0), reading("esp32-b", 1), reading("esp32-a", 2)]
    response = await client.post("/v1/readings", json=batch, headers=A)
    assert response.status_code == 403
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "device_id")]
    assert producer.sent == []


async def test_every_seed_route_authenticates(client: httpx.AsyncClient) -> None:
    routes = {
        "/api/v1/sensors/ingest": _equipment("PUMP-A1-001"),
        "/api/v1/sensors/ingest/batch": {"readings": [_equipment("PUMP-A1-001")]},
        "/api/v1/sensor-data": reading("esp32-a", 1),
        "/api/v1/sensor-data/batch": [reading("esp32-a", 1)],
        "/api/v1/ingest/chirpstack": _uplink(),
    }
    for path, body in routes.items():
        assert (await client.post(path, json=body)).status_code == 401, path
        foreign = await client.post(path, json=body, headers={"X-API-Key": TOKEN_B})
        assert foreign.status_code == 403, path
    latest = await client.get("/api/v1/sensors/PUMP-A1-001/latest", headers=A)
    assert latest.status_code == 403


# ---- canonical route: NDJSON, results, limits ---------------------------------------------------


async def test_ndjson_lines_are_readings_with_per_item_results(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    lines = [json.dumps(reading("esp32-a", n)) for n in range(3)]
    body = ("\n".join(lines[:2]) + "\n\n" + lines[2] + "\n").encode()
    response = await client.post(
        "/v1/readings", content=body, headers={**A, "content-type": "application/x-ndjson"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 3
    assert [r["index"] for r in answer["results"]] == [0, 1, 2]
    assert [r["event_id"] for r in answer["results"]] == answer["event_ids"]
    assert sorted(e.event_id for e in _events(producer)) == sorted(answer["event_ids"])


async def test_a_bad_ndjson_line_is_named_and_nothing_is_sent(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    lines = [json.dumps(reading("esp32-a", 0)), "{broken", json.dumps(reading("esp32-a", 2))]
    response = await client.post(
        "/v1/readings",
        content="\n".join(lines).encode(),
        headers={**A, "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 422
    assert response.json()["invalid_items"] == [1]
    assert producer.sent == []


async def test_a_chunked_body_over_the_limit_is_413_while_it_streams(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 1 MB in all; the limit is 20 kB
            sent += 1
            yield b" " * 1000

    for media in ("application/json", "application/x-ndjson"):
        sent = 0
        response = await client.post(
            "/v1/readings", content=chunks(), headers={**A, "content-type": media}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert sent < 1000  # refused while streaming, not after reading it all
    assert producer.sent == []


async def test_one_reading_too_large_for_a_kafka_record_is_413(
    settings: Settings, producer: FakeProducer
) -> None:
    small = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"envelope_max_bytes": 4096})}
    )
    big = reading("esp32-a", 1)
    big["metadata"] = {f"k{n}": "x" * 256 for n in range(32)}
    async with _client(small, producer) as client:
        response = await client.post("/v1/readings", json=big, headers=A)
    assert response.status_code == 413
    assert producer.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (reading("esp32-a", 1) | {"metadata": {"site": "lab\u0000"}}, None, "metadata.site"),
        (reading("esp32-a", 1) | {"metadata": {"note": "a\nb"}}, None, "metadata.note"),
        (
            reading("esp32-a", 1) | {"timestamp": (NOW - timedelta(days=31)).isoformat()},
            None,
            "timestamp",
        ),
        (
            reading("esp32-a", 1) | {"timestamp": (NOW + timedelta(minutes=10)).isoformat()},
            None,
            "timestamp",
        ),
    ],
    ids=["nul", "newline", "too-old", "too-far-ahead"],
)
async def test_bad_strings_and_timestamps_are_422_naming_the_field(
    client: httpx.AsyncClient,
    producer: FakeProducer,
    body: dict[str, Any],
    content_type: str | None,
    field: str,
) -> None:
    response = await client.post("/v1/readings", json=body, headers=A)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"device_id":"esp32-a","sensors":{"mq134":{"gas_concentration":NaN}}}', None, 422),
        (b'{"device_id":"esp32-a","sensors":{"mq134":{"gas_concentration":1e999}}}', None, 422),
        (b"[" * 10_000 + b"]" * 10_000, None, 422),
        (b'{"device_id": "' + b"a" * 15_000 + b'"}', None, 422),
        (b"device_id=esp32-a", "application/x-www-form-urlencoded", 415),
        (b"", "", 415),
        (b"\xff\xfe\x00", None, 422),
    ],
    ids=["nan", "overflow", "deep", "huge-string", "form", "no-type", "not-utf8"],
)
async def test_hostile_bodies_get_a_4xx_problem(
    client: httpx.AsyncClient,
    producer: FakeProducer,
    body: bytes,
    content_type: str | None,
    status: int,
) -> None:
    headers = {**A, "content-type": "application/json" if content_type is None else content_type}
    for path in ("/v1/readings", "/api/v1/sensor-data", "/api/v1/sensors/ingest"):
        response = await client.post(path, content=body, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert producer.sent == []


# ---- Idempotency-Key ----------------------------------------------------------------------------


async def test_a_key_reused_with_another_body_is_422_and_a_retry_maps_onto_the_same_ids(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    headers = {**A, "Idempotency-Key": "boot-7"}
    first = await client.post("/v1/readings", json=[reading("esp32-a", 1)], headers=headers)
    retry = await client.post("/v1/readings", json=[reading("esp32-a", 1)], headers=headers)
    assert first.status_code == retry.status_code == 202
    assert first.json()["event_ids"] == retry.json()["event_ids"]
    other = await client.post("/v1/readings", json=[reading("esp32-a", 2)], headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert len(_events(producer)) == 2  # the conflicting body was not sent


async def test_a_key_over_200_characters_is_422_naming_the_header_on_every_keyed_route(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    key = {"Idempotency-Key": "k" * 201}
    answers = [
        await client.post("/v1/readings", json=reading("esp32-a", 1), headers={**A, **key}),
        await client.post(
            "/api/v1/sensors/ingest", json=_equipment("esp32-a"), headers={**A, **key}
        ),
    ]
    for answer in answers:
        assert answer.status_code == 422
        assert [e["field"] for e in answer.json()["errors"]] == ["header.idempotency-key"]
    assert _events(producer) == []
    ok = {"Idempotency-Key": "k" * 200}
    longest = await client.post("/v1/readings", json=reading("esp32-a"), headers={**A, **ok})
    assert longest.is_success


async def test_an_unreachable_idempotency_store_is_503_only_for_requests_with_a_key(
    client: httpx.AsyncClient, idempotency: MemoryIdempotency, producer: FakeProducer
) -> None:
    idempotency.down = True
    keyed = await client.post(
        "/v1/readings", json=reading("esp32-a", 1), headers={**A, "Idempotency-Key": "k"}
    )
    assert keyed.status_code == 503
    assert keyed.headers["retry-after"] == "2"
    plain = await client.post("/v1/readings", json=reading("esp32-a", 1), headers=A)
    assert plain.status_code == 202


# ---- rate limits, concurrency, request ids, metrics ---------------------------------------------


async def test_a_device_over_its_profile_limit_gets_429_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    camera = {"X-API-Key": TOKEN_CAM}
    body = reading("cam-1", 1)
    statuses = [(await client.post("/v1/readings", json=body, headers=camera)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert int(statuses[2].headers["retry-after"]) >= 1
    # Another device (default limit) is not affected.
    assert (await client.post("/v1/readings", json=reading("esp32-a"), headers=A)).is_success


async def test_requests_beyond_the_concurrency_bound_get_503_at_once() -> None:
    producer = SlowProducer()
    async with _client(_settings(max_concurrent_requests=1), producer) as client:
        first = asyncio.create_task(client.post("/v1/readings", json=reading("esp32-a"), headers=A))
        while not producer.release.is_set() and not first.done():
            await asyncio.sleep(0.01)
            if (await client.get("/health")).status_code == 200:  # probes pass meanwhile
                busy = await client.post("/v1/readings", json=reading("esp32-a"), headers=A)
                assert busy.status_code == 503
                assert busy.headers["retry-after"] == "2"
                producer.release.set()
        assert (await first).status_code == 202


async def test_request_ids_are_echoed_or_made_and_appear_in_problems(
    client: httpx.AsyncClient,
) -> None:
    mine = await client.get("/health", headers={"X-Request-ID": "req-42.a:b"})
    assert mine.headers["x-request-id"] == "req-42.a:b"
    hostile = await client.get("/health", headers={"X-Request-ID": "evil\tid" + "x" * 200})
    assert hostile.headers["x-request-id"] != "evil\tid" + "x" * 200
    assert len(hostile.headers["x-request-id"]) == 32
    problem = await client.post("/v1/readings", json={}, headers={"X-Request-ID": "req-43"})
    assert problem.json()["request_id"] == "req-43"


async def test_metrics_count_requests_by_route_and_status_and_auth_failures(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/readings", json=reading("esp32-a"), headers=A)
    await client.post("/v1/readings", json=reading("esp32-a"))
    await client.get("/api/v1/sensors/esp32-a/latest")
    text = (await client.get("/metrics")).text
    assert 'fleet_api_requests_total{method="POST",route="/v1/readings",status="202"} 1.0' in text
    assert 'fleet_api_requests_total{method="POST",route="/v1/readings",status="401"} 1.0' in text
    assert 'route="/api/v1/sensors/{equipment_id}/latest",status="401"' in text
    assert 'fleet_api_auth_failures_total{status="401"} 2.0' in text
    assert 'fleet_api_readings_accepted_total{route="/v1/readings"} 1.0' in text
    assert "fleet_api_request_duration_seconds_bucket" in text
    assert "fleet_api_producer_queue_depth" in text


async def test_a_request_with_a_made_up_method_is_counted_as_other(
    client: httpx.AsyncClient,
) -> None:
    await client.request("BREW", "/v1/readings")
    text = (await client.get("/metrics")).text
    assert 'fleet_api_requests_total{method="other",route="/v1/readings",status="405"} 1.0' in text
    assert "BREW" not in text


@pytest.mark.parametrize(
    ("mode", "logged"), [("problems", [401]), ("all", [202, 401]), ("off", [])]
)
async def test_the_access_log_writes_the_answers_its_setting_names(
    producer: FakeProducer, caplog: pytest.LogCaptureFixture, mode: str, logged: list[int]
) -> None:
    caplog.set_level(logging.INFO, logger="fleetstream.access")
    async with _client(_settings(access_log=mode), producer) as client:
        assert (await client.post("/v1/readings", json=reading("esp32-a"), headers=A)).is_success
        assert (await client.post("/v1/readings", json=reading("esp32-a"))).status_code == 401
    access = [r for r in caplog.records if r.name == "fleetstream.access"]
    assert [r.__dict__["status"] for r in access] == logged


# ---- seed routes ------------------------------------------------------------------------------


def _equipment(equipment_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "equipment_id": equipment_id,
        "temperature": 85.5,
        "vibration": 0.45,
        "pressure": 3.2,
        "humidity": 65.0,
        "voltage": 220.0,
        "timestamp": (NOW - timedelta(hours=1)).replace(tzinfo=None).isoformat(),
        **extra,
    }


def _uplink(**extra: Any) -> dict[str, Any]:
    return {
        "deduplicationId": "3AC7E3C4-4401-4B8D-9386-A5C902F9202D",
        "time": (NOW - timedelta(minutes=1)).isoformat(),
        "deviceInfo": {"devEui": "0101010101010101", "deviceName": "lobby", "tenantId": "t"},
        "fCnt": 10,
        "fPort": 1,
        "data": "AQ==",
        "rxInfo": [{"gatewayId": "g"}],
        "object": {"pir": {"motion_detected": True}},
        **extra,
    }


async def test_seed001_reading_becomes_an_equipment_reading_of_the_upper_cased_id(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    eq = {"X-API-Key": TOKEN_EQ}
    response = await client.post(
        "/api/v1/sensors/ingest", json=_equipment("pump-a1-001"), headers=eq
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["equipment_id"], answer["status"]) == ("PUMP-A1-001", "received")
    (event,) = _events(producer)
    assert event.event_id == answer["reading_id"]
    payload = json.loads(bytes(event.payload))
    assert payload["device_id"] == "PUMP-A1-001"
    assert payload["sensors"]["equipment"] == {
        "temperature": 85.5,
        "vibration": 0.45,
        "pressure": 3.2,
        "humidity": 65.0,
    }
    assert payload["metadata"] == {"voltage": 220.0}
    assert payload["timestamp"].endswith("+00:00")  # a naive seed timestamp is UTC


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_equipment("PUMP-A1-001", temperature=200.5), "temperature"),
        (_equipment("PUMP-A1-001", temperature=-50.1), "temperature"),
        (_equipment("PUMP-A1-1"), "equipment_id"),
        (_equipment("PUMP_A1_001"), "equipment_id"),
        (_equipment("PUMP-A1-001", vibration=5000.0), "vibration"),
        (_equipment("PUMP-A1-001", colour="red"), "colour"),
    ],
)
async def test_seed001_rules_name_the_seeds_own_fields(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/api/v1/sensors/ingest", json=body, headers={"X-API-Key": TOKEN_EQ}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_seed001_batch_names_the_bad_item_and_holds_at_most_100(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    eq = {"X-API-Key": TOKEN_EQ}
    good, bad = _equipment("PUMP-A1-001"), _equipment("PUMP-A1-001", temperature=500)
    response = await client.post(
        "/api/v1/sensors/ingest/batch", json={"readings": [good, bad, good]}, headers=eq
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["readings.1.temperature"]
    over = await client.post(
        "/api/v1/sensors/ingest/batch", json={"readings": [good] * 101}, headers=eq
    )
    assert over.status_code == 422
    ok = await client.post(
        "/api/v1/sensors/ingest/batch", json={"readings": [good] * 3}, headers=eq
    )
    assert ok.status_code == 201
    answer = ok.json()
    assert (answer["total"], answer["successful"], answer["failed"]) == (3, 3, 0)
    assert sorted(e.event_id for e in _events(producer)) == sorted(answer["reading_ids"])


async def test_seed002_routes_answer_in_the_seeds_shape(
    client: httpx.AsyncClient, producer: FakeProducer
) -> None:
    one = await client.post("/api/v1/sensor-data", json=reading("esp32-a", 1), headers=A)
    assert one.status_code == 202
    assert (one.json()["message"], one.json()["device_id"]) == ("Sensor data accepted", "esp32-a")
    many = await client.post(
        "/api/v1/sensor-data/batch", json=[reading("esp32-a", n) for n in range(3)], headers=A
    )
    assert many.status_code == 202
    assert [r["status"] for r in many.json()["results"]] == ["accepted"] * 3
    assert len(_events(producer)) == 4
    bad = await client.post(
        "/api/v1/sensor-data", json=reading("esp32-a", sensors={"pir": {}}), headers=A
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "sensors.pir.motion_detected"


async def test_a_chirpstack_uplink_is_stored_under_its_dev_eui_and_deduplication_id(
    settings: Settings, producer: FakeProducer
) -> None:
    lorawan = [("0101010101010101", "lorawan-token-1")]
    async with _client(settings, producer, devices=lorawan) as client:
        key = {"X-API-Key": "lorawan-token-1"}
        response = await client.post("/api/v1/ingest/chirpstack", json=_uplink(), headers=key)
        assert response.status_code == 202, response.text
        assert response.json()["event_id"] == "3ac7e3c4-4401-4b8d-9386-a5c902f9202d"
        join = await client.post(
            "/api/v1/ingest/chirpstack", json=_uplink(), params={"event": "join"}, headers=key
        )
        assert join.status_code == 202
        bad = await client.post(
            "/api/v1/ingest/chirpstack", json=_uplink(object={"radar": {}}), headers=key
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "object.radar"
    (event,) = _events(producer)  # the join event stored nothing
    payload = json.loads(bytes(event.payload))
    assert payload["device_id"] == "0101010101010101"
    assert payload["metadata"] == {"f_cnt": 10, "f_port": 1, "device_name": "lobby"}


async def test_service_info_and_openapi_document_every_route(client: httpx.AsyncClient) -> None:
    info = (await client.get("/")).json()
    assert info["status"] == "running"
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/readings",
        "/api/v1/sensors/ingest",
        "/api/v1/sensors/ingest/batch",
        "/api/v1/sensors/{equipment_id}/latest",
        "/api/v1/sensor-data",
        "/api/v1/sensor-data/batch",
        "/api/v1/ingest/chirpstack",
        "/metrics",
    ):
        assert path in paths
    body = paths["/v1/readings"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/x-ndjson"}


async def test_metrics_with_the_token_rule_want_the_admin_token(producer: FakeProducer) -> None:
    settings = _settings().model_copy(update={"metrics": MetricsSettings(access="token")})
    async with _client(settings, producer) as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "FLEET_METRICS__ACCESS" in refused.json()["detail"]
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        admin = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
        scraped = await http.get("/metrics", headers=admin)
        assert scraped.status_code == 200
        assert "fleet_api_requests_total" in scraped.text
        assert "_created" not in scraped.text

"""Secure mode end to end (``make test-secure``): a stack of the tests' own (a broker on SASL_SSL
with SCRAM principals and ACLs; Postgres, Redis and the schema registry on TLS only), the API
over HTTPS, the MQTT front over TLS, the worker and an analytics reader, each with its own
principal; and the refusals at each hop."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import fastavro
import httpx
import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from cli.stack.certs import Pki
from cli.stack.kafka_security import principal_kafka
from connectors.kafka.security import client_config
from connectors.postgres.pool import connect
from connectors.schema_registry import client_for
from schemas.avro_codec import decode, framed_schema_id
from schemas.settings import Settings
from tests import clock
from tests.factories import device_ids, reading
from tests.integration.fleet import ADMIN, ADMIN_DEVICES, Fleet
from tests.integration.mqtt_tools import FrontDevice, once_admitted
from tests.integration.processes import ApiProcess, FrontProcess, ServiceProcess, WorkerProcess
from tests.integration.secure_tools import (
    as_principal,
    ca_context,
    fetch_error,
    kafka_errors,
    prepare_pipeline,
    produce_error,
    with_certificate,
)
from tests.support import free_port, isolated, wait_until

pytestmark = pytest.mark.secure

TOPIC = "neurobuild/sensors/{}/data"
DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED
NOT_AUTHORIZED = 0x87  # MQTT 5 CONNACK: a disabled device


@pytest.fixture
def secure(secure_stack: Settings, tmp_path: Path) -> Settings:
    """Fresh uuid topics and app id on the secure stack, their ACLs granted, topics made."""
    settings = isolated(secure_stack, "secure", tmp_path / "faust", sink_batch_max=200)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"partitions": 2})}
    )
    prepare_pipeline(settings)
    return settings


def test_kafka_refuses_strangers_and_keeps_each_principal_to_its_part(secure: Settings) -> None:
    bootstrap, topics = secure.kafka.bootstrap_servers, secure.topics
    api = principal_kafka(secure, "api")
    # No credentials (plain text on the SASL_SSL listener), then a wrong password.
    assert kafka_errors({"bootstrap.servers": bootstrap}, timeout_s=10)
    wrong = api.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    refused = kafka_errors(client_config(bootstrap, wrong))
    assert KafkaError._AUTHENTICATION in [error.code() for error in refused], refused
    assert kafka_errors(client_config(bootstrap, api)) == []
    # The edges produce raw; the analytics reader may not, and may not read it either.
    assert produce_error(secure, "api", topics.raw) is None
    assert produce_error(secure, "bridge", topics.raw) is None
    assert _code(produce_error(secure, "analytics", topics.raw)) == DENIED
    assert _code(fetch_error(secure, "analytics", topics.raw)) == DENIED
    assert fetch_error(secure, "analytics", topics.readings) is None
    # Only the worker reads and writes its changelogs.
    changelog = f"{secure.worker.app_id}-status-changelog"
    _create_as_admin(secure, changelog)
    assert _code(fetch_error(secure, "api", changelog)) == DENIED
    assert _code(produce_error(secure, "api", changelog)) == DENIED
    assert _code(produce_error(secure, "bridge", changelog)) == DENIED
    assert produce_error(secure, "worker", changelog) is None
    assert fetch_error(secure, "worker", changelog) is None


@pytest.fixture
async def secure_db(secure: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the secure stack's Postgres (verify-full), where the worker writes."""
    conn = await connect(secure.postgres)
    yield conn
    await conn.close()


async def test_https_and_mqtt_over_tls_reach_postgres_and_the_analytics_reader(
    secure: Settings, secure_db: asyncpg.Connection, tmp_path: Path
) -> None:
    http_device, mqtt_device = device_ids(2, "secure")
    api = _api(secure, tmp_path)
    front = _front(secure, tmp_path)
    worker = WorkerProcess(as_principal(secure, "worker"), tmp_path / "worker.log")
    started: list[ServiceProcess] = [api, front, worker]
    for process in started:
        process.start()
    try:
        async with _https_client(api, secure) as client:
            await _wait_ready(client, "/health/ready", api)
            fleet = Fleet(client)
            await fleet.enroll([http_device, mqtt_device])
            http_event = await _post_over_https(client, fleet, http_device)
        mqtt_event = await _publish_over_tls(front, fleet, mqtt_device)
        assert secure.postgres.sslmode == "verify-full" and secure.redis.tls
        await _wait_rows(secure_db, {http_event: http_device, mqtt_event: mqtt_device}, worker)
        seen = await asyncio.to_thread(_analytics_devices, secure, {http_device, mqtt_device})
        assert seen == {http_device, mqtt_device}
    finally:
        for process in started:
            process.stop()


async def test_a_device_certificate_stands_for_its_token_until_the_device_is_disabled(
    secure: Settings, tmp_path: Path
) -> None:
    (device,) = device_ids(1, "cert")
    pki = Pki.of_home(secure.stack.home)
    pki.issue(device)  # CN = the device id, signed by the stack's CA
    api = _api(secure, tmp_path)
    front = _front(secure, tmp_path, client_ca=str(pki.ca_cert))
    for process in (api, front):
        process.start()
    try:
        async with _https_client(api, secure) as client:
            await _wait_ready(client, "/health/ready", api)
            fleet = Fleet(client)
            await fleet.enroll([device])
            await _publish_with_certificate(front, device, pki)
            disabled = await client.patch(
                f"{ADMIN_DEVICES}/{device}", json={"is_enabled": False}, headers=ADMIN
            )
            assert disabled.status_code == 200, disabled.text

            async def revoked() -> bool:
                attempt = _CertDevice(front.settings, device, pki)
                try:
                    answer = await asyncio.to_thread(attempt.connect)
                finally:
                    attempt.close()
                return answer is not None and answer.value == NOT_AUTHORIZED

            await wait_until(revoked, timeout_s=30, what="the certificate refused once disabled")
    finally:
        for process in (api, front):
            process.stop()


# -- the hops ---------------------------------------------------------------------------------


class _Api(ApiProcess):
    def __init__(self, settings: Settings, log: Path) -> None:
        super().__init__(settings, log)
        self.settings = settings


class _Front(FrontProcess):
    def __init__(self, settings: Settings, log: Path) -> None:
        super().__init__(settings, log)
        self.settings = settings


def _api(secure: Settings, tmp_path: Path) -> _Api:
    cert, key = with_certificate(secure, "api")
    settings = as_principal(secure, "api")
    api = settings.api.model_copy(
        update={"port": free_port(), "tls_certfile": cert, "tls_keyfile": key}
    )
    return _Api(settings.model_copy(update={"api": api}), tmp_path / "api.log")


def _front(secure: Settings, tmp_path: Path, client_ca: str = "") -> _Front:
    cert, key = with_certificate(secure, "mqtt-front")
    settings = as_principal(secure, "bridge")
    front = settings.mqtt_front.model_copy(
        update={
            "plain": False,
            "port": free_port(),
            "tls_port": free_port(),
            "health_port": free_port(),
            "tls_certfile": cert,
            "tls_keyfile": key,
            "tls_client_cafile": client_ca,
        }
    )
    return _Front(settings.model_copy(update={"mqtt_front": front}), tmp_path / "front.log")


def _https_client(api: _Api, secure: Settings) -> httpx.AsyncClient:
    base = f"https://127.0.0.1:{api.settings.api.port}"
    return httpx.AsyncClient(base_url=base, verify=ca_context(secure), timeout=30)


async def _wait_ready(client: httpx.AsyncClient, path: str, process: ServiceProcess) -> None:
    async def ready() -> bool:
        try:
            return (await client.get(path)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(ready, timeout_s=90, what=lambda: f"{path}\n{process.log_tail()}")


async def _post_over_https(client: httpx.AsyncClient, fleet: Fleet, device: str) -> str:
    """A reading over HTTPS: refused without a token, accepted with one (HSTS on both)."""
    anonymous = await client.post("/v1/readings", json=reading(device, 1))
    assert anonymous.status_code == 401, anonymous.text
    response = await fleet.post(reading(device, 1))
    assert response.status_code == 202, response.text
    assert response.headers["strict-transport-security"].startswith("max-age=")
    plain = f"http://127.0.0.1:{client.base_url.port}/health/live"
    with pytest.raises(httpx.TransportError):  # plain HTTP finds no HTTP server there
        async with httpx.AsyncClient() as plain_client:
            await plain_client.get(plain)
    (event_id,) = response.json()["event_ids"]
    return str(event_id)


class _TlsDevice(FrontDevice):
    def __init__(self, settings: Settings, device: str, token: str, ca: ssl.SSLContext) -> None:
        super().__init__(settings, device, token, protocol=mqtt.MQTTv5)
        self.client.tls_set_context(ca)

    def connect(self) -> ReasonCode | None:
        self.client.connect("127.0.0.1", self.settings.mqtt_front.tls_port, keepalive=30)
        self.client.loop_start()
        self.connected.wait(10)
        return self.connack


async def _publish_over_tls(front: _Front, fleet: Fleet, device: str) -> str:
    """A reading over MQTT/TLS with the device's token; a wrong token is refused first."""
    settings, context = front.settings, ca_context(front.settings)
    health = f"http://127.0.0.1:{settings.mqtt_front.health_port}/health"
    async with httpx.AsyncClient() as http:
        await _wait_ready(http, health, front)
    intruder = _TlsDevice(settings, device, "not-the-token", context)
    try:
        refused = await asyncio.to_thread(intruder.connect)
    finally:
        intruder.close()
    assert refused is not None and refused.is_failure, refused
    event_id = str(uuid.uuid4())
    body = reading(device) | {"timestamp": clock.now().isoformat(), "event_id": event_id}
    client = await once_admitted(
        lambda: _TlsDevice(settings, device, fleet.tokens[device], context), f"TLS {device}"
    )
    try:
        payload = json.dumps(body).encode()
        assert await asyncio.to_thread(client.publish, TOPIC.format(device), payload) == 0
    finally:
        client.close()
    return event_id


class _CertDevice(_TlsDevice):
    """A device that shows its certificate instead of a token (no username, no password)."""

    def __init__(self, settings: Settings, device: str, pki: Pki) -> None:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(pki.cert(device), pki.key(device))
        super().__init__(settings, device, "", context)
        self.client.username_pw_set(None, None)


async def _publish_with_certificate(front: _Front, device: str, pki: Pki) -> None:
    health = f"http://127.0.0.1:{front.settings.mqtt_front.health_port}/health"
    async with httpx.AsyncClient() as http:
        await _wait_ready(http, health, front)
    client = await once_admitted(
        lambda: _CertDevice(front.settings, device, pki), f"{device} with its certificate"
    )
    try:
        body = reading(device) | {"timestamp": clock.now().isoformat()}
        payload = json.dumps(body).encode()
        assert await asyncio.to_thread(client.publish, TOPIC.format(device), payload) == 0
    finally:
        client.close()


async def _wait_rows(db: asyncpg.Connection, events: dict[str, str], worker: WorkerProcess) -> None:
    async def stored() -> bool:
        rows = await db.fetch(
            "SELECT event_id::text, device_id FROM readings WHERE event_id = ANY($1::uuid[])",
            list(events),
        )
        return {row["event_id"]: row["device_id"] for row in rows} == events

    await wait_until(stored, timeout_s=120, what=lambda: f"the rows\n{worker.log_tail()}")


def _analytics_devices(secure: Settings, wanted: set[str], timeout_s: float = 60.0) -> set[str]:
    """The devices of ``wanted`` the analytics principal reads on the readings topic, as a
    member of its own consumer group."""
    kafka = principal_kafka(secure, "analytics")
    config = {"group.id": f"analytics-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    consumer = Consumer(client_config(kafka.bootstrap_servers, kafka, **config))
    consumer.subscribe([secure.topics.readings])
    registry, schemas, seen = client_for(secure), {}, set()
    try:
        for _ in range(int(timeout_s / 0.5)):
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            value = message.value()
            assert value is not None
            schema_id = framed_schema_id(value)
            if schema_id not in schemas:
                schemas[schema_id] = fastavro.parse_schema(json.loads(registry.schema(schema_id)))
            seen.add(decode(value, schemas[schema_id])["device_id"])
            if wanted <= seen:
                break
        return seen & wanted
    finally:
        consumer.close()


def _create_as_admin(secure: Settings, topic: str) -> None:
    admin_kafka = principal_kafka(secure, "admin")
    admin = AdminClient(client_config(admin_kafka.bootstrap_servers, admin_kafka))
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)


def _code(error: KafkaError | None) -> int | None:
    return None if error is None else error.code()

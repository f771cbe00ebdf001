"""Every request example of the five seed documents (tests/integration/seed_examples/), sent as
the seed writes it to two real API processes on the real stack: one with every profile on
(``FLEET_COMPAT__SEEDS=000,001,002,003,004``, loopback trusted, seed 002's JWT secret), where
each gets the seed's documented answer (or, where the seed states none, fleetstream's success
answer), and one with no profile on, where it gets the canonical answer. Seed 002's MQTT and
WebSocket test runs through an MQTT front and a worker as well.

The two APIs share this module's topics, so they start once; each example gets fresh ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect

from connectors.kafka.admin import delete_app_topics, delete_topics, ensure_topics
from schemas.settings import DEV_ADMIN_TOKEN, EgressSettings, Settings
from streams.topology import topic_specs
from tests.integration.conftest import LOOPBACK
from tests.integration.fleet import ADMIN, ADMIN_DEVICES
from tests.integration.mqtt_tools import FrontDevice
from tests.integration.processes import FrontProcess, WorkerProcess
from tests.integration.seed_examples import Example, every_example, render
from tests.integration.test_compat_answers import base_url, served
from tests.integration.test_mqtt_front import _healthy, connected
from tests.support import free_port, isolated, wait_until

EVERY_SEED = "000,001,002,003,004"
JWT_SECRET = "jwt-secret-shared-with-the-device-management-service"  # noqa: S105 - a test secret
READ_TOKEN = "seed-002-dashboard-read-token"  # noqa: S105 - a test secret
PROBLEM = "application/problem+json"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
OGG = b"OggS\x00\x02" + bytes(range(256)) * 8
FILES = {"before.jpg": JPEG, "after.jpg": JPEG, "chunk.ogg": OGG}
"""The files the seeds' examples name but do not give."""
CURL_TYPES = {".jpg": "image/jpeg"}
"""What curl's ``-F name=@file`` sends as the part's type (else application/octet-stream)."""

EXAMPLES = every_example()
HTTP_EXAMPLES = [example for example in EXAMPLES if example.kind == "http"]
(MQTT_WS,) = [example for example in EXAMPLES if example.kind == "mqtt-websocket"]


# -- the processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_pipeline(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The conftest's ``pipeline``, once for this module: its own topics, blob root and live
    read token (seed 002's dashboard uses it)."""
    folder = tmp_path_factory.mktemp("seed-examples")
    settings = isolated(stack_settings, "seedex", folder / "faust", sink_batch_max=200)
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"partitions": 3}),
            "egress": EgressSettings(allow=LOOPBACK),
            "blob": settings.blob.model_copy(update={"root": folder / "blobs"}),
            "live": settings.live.model_copy(update={"read_token": SecretStr(READ_TOKEN)}),
        }
    )
    specs = topic_specs(settings)
    ensure_topics(settings.kafka.bootstrap_servers, specs)
    yield settings
    delete_topics(settings.kafka.bootstrap_servers, [spec.name for spec in specs])
    delete_app_topics(settings.kafka.bootstrap_servers, settings.worker.app_id)


@dataclass
class Apis:
    on: Settings
    off: Settings
    folder: Path


@pytest.fixture(scope="module")
async def apis(
    module_pipeline: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Apis]:
    folder = tmp_path_factory.mktemp("seed-example-apis")
    compat: dict[str, Any] = {"trusted_networks": "127.0.0.0/8"}
    async with (
        served(
            module_pipeline,
            EVERY_SEED,
            folder / "api-on.log",
            jwt_secret=SecretStr(JWT_SECRET),
            **compat,
        ) as on,
        served(module_pipeline, "", folder / "api-off.log", **compat) as off,
    ):
        yield Apis(on, off, folder)


@contextlib.asynccontextmanager
async def clients(apis: Apis) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=base_url(apis.on), timeout=30) as on,
        httpx.AsyncClient(base_url=base_url(apis.off), timeout=30) as off,
    ):
        yield on, off


# -- the values substituted for the seeds' placeholders ----------------------------------------


def fresh_values() -> dict[str, str]:
    """``${name}`` values of one run of one example: fresh ids and tokens, times of now (the
    seeds' ``new Date()``; the API's timestamp window is the real clock's)."""
    run = uuid.uuid4().hex[:8].upper()
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    esp32 = f"test-device-{run.lower()}"
    return {
        "now": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "hex8": uuid.uuid4().hex[:8],
        "equipment_id": f"RADAR-L{run}-001",
        "esp32": esp32,
        "jwt": _jwt(esp32, JWT_SECRET),
        "jwt_other_secret": _jwt(esp32, "another-secret-than-the-services-own-0001"),
        "admin_token": DEV_ADMIN_TOKEN,
        "read_token": READ_TOKEN,
        "point_id": str(uuid.uuid4()),
        "register_id": str(uuid.uuid4()),
        "device_id": str(uuid.uuid4()),
        "device_token": f"recorder-{uuid.uuid4().hex}",
        "start_ts": minute.isoformat(),
        "end_ts": (minute + timedelta(minutes=1)).isoformat(),
    }


def _jwt(device_id: str, secret: str) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    return jwt.encode({"device_id": device_id, "exp": expires}, secret, algorithm="HS256")


async def resolved(
    example: Example, on: httpx.AsyncClient, off: httpx.AsyncClient
) -> dict[str, str]:
    """The example's values, with what they need done first: its devices registered (and
    known to both APIs), seed 004's device created, seed 003's request made."""
    plain = fresh_values()
    registered = render(example.data.get("registered", []), plain)
    tokens = await ensure_registered(on, registered)
    for client in (on, off):
        await known_to(client, tokens)
    if plain["esp32"] in tokens:  # seed 002's x-api-key: the device's own key
        plain["esp32_key"] = tokens[plain["esp32"]]
    if example.data.get("device") == "created":
        await create_recorder(on, off, plain)
    if "request_id" in example.placeholders():
        plain["request_id"] = await upload_request_id(on)
    return plain


async def ensure_registered(client: httpx.AsyncClient, device_ids: list[str]) -> dict[str, str]:
    """Register each device, or, if a run before this one did, enable it with a new token (the
    seeds' own ids, like ``Haas_Pit_1``, outlive a run); their tokens."""
    tokens: dict[str, str] = {}
    for device_id in device_ids:
        created = await client.post(ADMIN_DEVICES, json={"device_id": device_id}, headers=ADMIN)
        if created.status_code == 409:
            path = f"{ADMIN_DEVICES}/{device_id}"
            enabled = await client.patch(path, json={"is_enabled": True}, headers=ADMIN)
            assert enabled.status_code == 200, enabled.text
            created = await client.post(f"{path}/rotate-token", headers=ADMIN)
            assert created.status_code == 200, created.text
        else:
            assert created.status_code == 201, created.text
        tokens[device_id] = created.json()["token"]
    return tokens


async def known_to(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """Wait until the API's device cache has the devices' current tokens."""

    async def all_known() -> bool:
        for device_id, token in tokens.items():
            answer = await client.get(
                f"/api/v1/sensors/{device_id}/latest", headers={"X-API-Key": token}
            )
            if answer.status_code != 200:
                return False
        return True

    await wait_until(all_known, timeout_s=30, what=f"the API to know {sorted(tokens)}")


async def create_recorder(
    on: httpx.AsyncClient, off: httpx.AsyncClient, values: dict[str, str]
) -> None:
    """Seed 004's create-device example, for the examples that use its device; then wait
    until both APIs admit its token."""
    (create,) = [example for example in EXAMPLES if example.name == "004-create-device"]
    answer = await send(on, render(create.data["request"], values))
    assert answer.status_code == 201, answer.text
    bearer = {"Authorization": f"Bearer {values['device_token']}"}

    async def admitted() -> bool:
        for client in (on, off):
            probe = await client.get(
                f"/api/v1/sensors/{values['device_id']}/latest", headers=bearer
            )
            if probe.status_code != 200:
                return False
        return True

    await wait_until(admitted, timeout_s=30, what="the APIs to know seed 004's device")


async def upload_request_id(on: httpx.AsyncClient) -> str:
    """The request id answered to seed 003's upload example (its status example's
    ``{request_id}``)."""
    (upload,) = [example for example in EXAMPLES if example.name == "003-upload-images"]
    tokens = await ensure_registered(on, ["Haas_Pit_1"])
    await known_to(on, tokens)
    answer = await send(on, upload.data["request"])
    assert answer.status_code == 200, answer.text
    return str(answer.json()["request_id"])


# -- sending a request as the seed writes it ---------------------------------------------------


async def send(client: httpx.AsyncClient, request: dict[str, Any]) -> httpx.Response:
    """``request`` to ``client``'s API: the seed's URL with only scheme, host and port
    replaced; its headers; its JSON, raw content or multipart form in the seed's order."""
    url = urlsplit(request["url"])
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = dict(request.get("headers", {}))
    options: dict[str, Any] = {}
    if "json" in request:
        options["content"] = json.dumps(request["json"], separators=(",", ":")).encode()
    elif "content" in request:
        options["content"] = request["content"].encode()
    elif "form" in request:
        boundary = f"------------------------{uuid.uuid4().hex[:24]}"
        headers["Content-Type"] = f"{headers['Content-Type']}; boundary={boundary}"
        options["content"] = multipart(request["form"], boundary)
    return await client.request(request["method"], path, headers=headers, **options)


def multipart(parts: list[list[str]], boundary: str) -> bytes:
    """The body curl sends for ``-F name=value`` and ``-F name=@file`` in this order."""
    body = b""
    for name, value in parts:
        body += f"--{boundary}\r\n".encode()
        if value.startswith("@"):
            filename = value[1:]
            kind = CURL_TYPES.get(Path(filename).suffix, "application/octet-stream")
            body += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {kind}\r\n\r\n"
            ).encode()
            body += FILES[filename] + b"\r\n"
        else:
            body += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            body += value.encode() + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


# -- the answers -------------------------------------------------------------------------------


def contains(answer: Any, expected: Any) -> bool:
    """Every key of ``expected`` is in ``answer`` with that value (recursively)."""
    if isinstance(expected, dict):
        return isinstance(answer, dict) and all(
            key in answer and contains(answer[key], value) for key, value in expected.items()
        )
    return bool(answer == expected)


def check(response: httpx.Response, expected: dict[str, Any]) -> None:
    described = f"{response.request.method} {response.request.url.path}: {response.text[:500]}"
    assert response.status_code == expected["status"], described
    if expected.get("problem"):
        assert response.headers["content-type"] == PROBLEM, described
        assert response.json()["status"] == expected["status"], described
    if "content_type" in expected:
        assert response.headers["content-type"].startswith(expected["content_type"]), described
    for text in expected.get("text_contains", []):
        assert text in response.text, (text, described)
    if "json_exact" in expected:
        assert response.json() == expected["json_exact"], described
    if "json" in expected:
        assert contains(response.json(), expected["json"]), (expected["json"], described)
    if "keys" in expected:
        assert list(response.json()) == expected["keys"], described
    if "keys_include" in expected:
        assert set(expected["keys_include"]) <= set(response.json()), described
    if expected.get("time"):
        assert datetime.fromisoformat(response.json()["time"]).tzinfo is not None, described
    if expected.get("chunk"):
        answer = response.json()
        assert uuid.UUID(answer["chunk_id"]) and not answer["stored_path"].startswith("/")


async def frames_stored(client: httpx.AsyncClient) -> float:
    """The API's ``fleet_api_frames_stored_total{source="upload"}`` (seed 003's
    ``ingestion_frames_total`` alias)."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith('fleet_api_frames_stored_total{source="upload"}'):
            return float(line.split()[-1])
    return 0.0


async def answer_and_follow_up(
    client: httpx.AsyncClient, example: Example, values: dict[str, str], expected: dict[str, Any]
) -> None:
    request = render(example.data["request"], values)
    frames_before = await frames_stored(client)
    check(await send(client, request), render(expected, values))
    if "frames_counted" in expected:
        assert await frames_stored(client) - frames_before == expected["frames_counted"]
    if expected.get("then_chunk_refused"):  # seed 004: is_enabled: "Whether device can upload"
        (chunk,) = [example for example in EXAMPLES if example.name == "004-chunk-upload"]

        async def refused() -> bool:  # once this API has read the change from the topic
            answer = await send(client, render(chunk.data["request"], values))
            assert answer.status_code in (200, 401), answer.text
            return answer.status_code == 401

        await wait_until(refused, timeout_s=30, what="the disabled recorder's chunk refused")


@pytest.mark.parametrize("example", HTTP_EXAMPLES, ids=[example.name for example in HTTP_EXAMPLES])
async def test_the_seed_example_gets_the_seed_answer_and_without_profiles_the_canonical_one(
    example: Example, apis: Apis
) -> None:
    async with clients(apis) as (on, off):
        for client, expected in (
            (on, example.data["with_profile"]),
            (off, example.data["without_profile"]),
        ):
            values = await resolved(example, on, off)
            await answer_and_follow_up(client, example, values, expected)


# -- seed 002's MQTT and WebSocket test --------------------------------------------------------


def front_settings(api: Settings) -> Settings:
    """An MQTT front beside ``api``, with its profiles (the seed's ``mqtt://localhost:1883``)."""
    return api.model_copy(
        update={
            "mqtt_front": api.mqtt_front.model_copy(
                update={"port": free_port(), "health_port": free_port()}
            ),
            "mqtt": api.mqtt.model_copy(update={"manage_device_credentials": False}),
        }
    )


@contextlib.asynccontextmanager
async def mqtt_front(settings: Settings, log: Path) -> AsyncIterator[FrontProcess]:
    process = FrontProcess(settings, log)
    process.start()
    try:
        await wait_until(lambda: _healthy(settings), timeout_s=60, what=process.log_tail)
        yield process
    finally:
        process.stop()


def anonymous_client(settings: Settings, values: dict[str, str]) -> FrontDevice:
    """``mqtt.connect('mqtt://localhost:1883')``: mqtt.js speaks MQTT 3.1.1, sends no user name
    and makes up a client id."""
    mqtt_part = render(MQTT_WS.data["mqtt"], values)
    client = FrontDevice(
        settings, "-", "-", client_id=mqtt_part["client_id"], protocol=mqtt.MQTTv311
    )
    client.client.username_pw_set(None)
    return client


async def run_the_seed_test(settings: Settings, ws_url: str, values: dict[str, str]) -> Any:
    """The seed's steps in its order: MQTT connect, WebSocket connect, subscribe, publish,
    then the first ``sensor-data`` message of ``test-device``."""
    mqtt_part = render(MQTT_WS.data["mqtt"], values)
    publisher = anonymous_client(settings, values)
    try:
        connack = await asyncio.to_thread(publisher.connect)
        assert connack is not None and not connack.is_failure, connack
        async with connect(ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps(MQTT_WS.data["websocket"]["send"]))
            payload = json.dumps(mqtt_part["payload"]).encode()
            acked = await asyncio.to_thread(publisher.publish, mqtt_part["topic"], payload)
            assert acked == 0, acked
            sent = datetime.fromisoformat(mqtt_part["payload"]["timestamp"])
            return await asyncio.wait_for(first_sensor_data(ws, sent), 90)
    finally:
        publisher.close()


async def first_sensor_data(ws: ClientConnection, sent: datetime) -> Any:
    """The seed's wait: the first ``sensor-data`` message of ``test-device``, of this run's
    publish (the other run before may have left one of its own in the topic)."""
    async for frame in ws:
        message = json.loads(frame)
        if message["type"] != "sensor-data" or message["data"]["device_id"] != "test-device":
            continue
        if datetime.fromisoformat(message["data"].get("timestamp", "1970-01-01T00:00:00Z")) == sent:
            return message["data"]
    raise AssertionError("the WebSocket closed before the reading came")


@pytest.fixture
async def seed_device(apis: Apis) -> AsyncIterator[dict[str, str]]:
    """``test-device`` registered and known to the APIs; the example's values."""
    async with clients(apis) as (on, off):
        yield await resolved(MQTT_WS, on, off)


@pytest.mark.parametrize(
    "ws_url",
    [
        pytest.param(MQTT_WS.data["websocket"]["url"], id="as-documented"),
        pytest.param(MQTT_WS.data["with_a_token"]["url"], id="with-the-read-token"),
    ],
)
async def test_seed002_mqtt_to_websocket_test_with_the_profile_on(
    ws_url: str, apis: Apis, seed_device: dict[str, str], tmp_path: Path
) -> None:
    front = front_settings(apis.on)
    worker = WorkerProcess(apis.on, tmp_path / "worker.log")
    worker.start()
    try:
        async with mqtt_front(front, tmp_path / "front.log"):
            await ensure_front_knows(apis, front)
            url = render(ws_url, seed_device).replace(
                "ws://localhost:3001", f"ws://127.0.0.1:{apis.on.compat.ws_port}"
            )
            message = await run_the_seed_test(front, url, seed_device)
    finally:
        worker.stop()
    assert contains(message, MQTT_WS.data["with_profile"]["message"]), message
    # the fields of the seed's EnrichedSensorReading its readers use (docs/compat.md)
    assert "ts" not in message  # the seed's `timestamp` instead (matched by the wait)
    assert message["device_metadata"]["location"] == "Lab 2"


async def ensure_front_knows(apis: Apis, front: Settings) -> str:
    """``test-device`` with a fresh token, once the front's registry copy has it."""
    async with clients(apis) as (on, _):
        tokens = await ensure_registered(on, ["test-device"])
        located = await on.patch(  # its registry entry, for the reading's device_metadata
            f"{ADMIN_DEVICES}/test-device", json={"metadata": {"location": "Lab 2"}}, headers=ADMIN
        )
        assert located.status_code == 200, located.text
    device = await connected(front, "test-device", tokens["test-device"])
    device.close()
    return tokens["test-device"]


async def test_seed002_mqtt_to_websocket_test_without_profiles(
    apis: Apis, seed_device: dict[str, str], tmp_path: Path
) -> None:
    """Canonical: the anonymous MQTT client is refused at CONNECT, nothing listens on the
    seed's WebSocket port."""
    front = front_settings(apis.off)
    async with mqtt_front(front, tmp_path / "front.log"):
        await ensure_front_knows(apis, front)
        publisher = anonymous_client(front, seed_device)
        try:
            connack = await asyncio.to_thread(publisher.connect)
        finally:
            publisher.close()
    assert connack is not None and connack.is_failure, connack
    with pytest.raises(OSError):
        async with connect(f"ws://127.0.0.1:{apis.off.compat.ws_port}", open_timeout=10):
            pass

"""Seed routes' auth modes through a served API (``fleetstream api`` on loopback), beyond the
seeds' own request examples (those are tests/integration/test_seed_examples.py): seed 001's
routes, whose document shows no body, with readings built from its rules; refusals of unknown
devices and untrusted peers; how the modes show at start-up and in ``/metrics``; seed 002's
anonymous MQTT rules.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from schemas.settings import CompatSettings, Settings
from tests.integration.fleet import Fleet
from tests.integration.mqtt_tools import FrontDevice
from tests.integration.processes import ApiProcess, FrontProcess
from tests.integration.test_mqtt_front import _healthy, connected
from tests.support import free_port, wait_until

SECRET = "jwt-secret-shared-with-the-device-management-service"  # noqa: S105 - a test secret
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Devices:
    """The seeds' example devices, with this test's suffix."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8].upper())

    @property
    def equipment(self) -> str:  # seed 001's TYPE-LOCATION-NNN
        return f"RADAR-L{self.run}-001"

    @property
    def esp32(self) -> str:  # seed 002's integration test device
        return f"test-device-{self.run.lower()}"

    @property
    def camera(self) -> str:  # seed 003's curl examples
        return f"Haas_Pit_{self.run}"

    @property
    def all(self) -> list[str]:
        return [self.equipment, self.esp32, self.camera]


@pytest.fixture
def ids() -> Devices:
    return Devices()


def _served(pipeline: Settings, tmp_path: Path, **compat: Any) -> Settings:
    return pipeline.model_copy(
        update={
            "api": pipeline.api.model_copy(update={"port": free_port()}),
            "blob": pipeline.blob.model_copy(update={"root": tmp_path / "blobs"}),
            "compat": CompatSettings(**compat),
        }
    )


@asynccontextmanager
async def _api(settings: Settings, log: Path) -> AsyncIterator[httpx.AsyncClient]:
    process = ApiProcess(settings, log)
    process.start()
    try:
        base = f"http://127.0.0.1:{settings.api.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/health/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout_s=90, what=lambda: f"the API\n{process.log_tail()}")
            yield client
    finally:
        process.stop()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _equipment_reading(ids: Devices) -> dict[str, Any]:
    return {
        "equipment_id": ids.equipment,
        "temperature": 85.5,
        "vibration": 0.45,
        "pressure": 3.2,
        "humidity": 65.0,
        "voltage": 220.0,
        "timestamp": _now(),
    }


def _esp32_reading(ids: Devices) -> dict[str, Any]:
    """Seed 002's integration test payload."""
    return {
        "device_id": ids.esp32,
        "timestamp": _now(),
        "sensors": {"pir": {"motion_detected": True}},
    }


def _device_jwt(device_id: str) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    return jwt.encode({"device_id": device_id, "exp": expires}, SECRET, algorithm="HS256")


async def test_each_seed_s_documented_requests_get_the_seed_s_answers(
    pipeline: Settings, tmp_path: Path, ids: Devices
) -> None:
    settings = _served(
        pipeline,
        tmp_path,
        seeds="001,002,003,004",
        trusted_networks="127.0.0.0/8",
        jwt_secret=SecretStr(SECRET),
    )
    async with _api(settings, tmp_path / "api.log") as client:
        fleet = Fleet(client)
        await fleet.enroll(ids.all)

        # seed 001: "Authentication: None"
        ingest = await client.post("/api/v1/sensors/ingest", json=_equipment_reading(ids))
        assert ingest.status_code == 201, ingest.text
        assert ingest.json()["status"] == "received"
        batch = await client.post(
            "/api/v1/sensors/ingest/batch", json={"readings": [_equipment_reading(ids)] * 2}
        )
        assert batch.status_code == 201, batch.text
        assert batch.json()["successful"] == 2
        stranger = {**_equipment_reading(ids), "equipment_id": f"PUMP-L{ids.run}-999"}
        unknown = await client.post("/api/v1/sensors/ingest", json=stranger)
        assert unknown.status_code == 403
        assert unknown.json()["errors"][0]["field"] == "device_id"

        # seed 002: a JWT naming an unregistered device gets the seed's "Invalid token" body
        refused = await client.post(
            "/api/v1/sensor-data",
            json=_esp32_reading(ids),
            headers={"Authorization": f"Bearer {_device_jwt('no-such-device')}"},
        )
        assert refused.status_code == 401
        assert refused.json() == {"error": "Invalid token"}

        # seed 004: its chunks keep their Bearer device token
        chunk = await client.post("/api/v1/chunks", data={"device_id": ids.camera})
        assert chunk.status_code == 401

        scrape = (await client.get("/metrics")).text
        assert 'fleet_compat_route_auth{mode="none",route="/api/v1/sensors/ingest"} 1.0' in scrape
        assert 'fleet_compat_route_auth{mode="jwt",route="/api/v1/sensor-data"} 1.0' in scrape
    log = (tmp_path / "api.log").read_text()
    assert "seed 003 route POST /api/v1/ingest/upload accepts auth mode none" in log


async def test_with_the_profiles_off_the_same_requests_get_the_canonical_401(
    pipeline: Settings, tmp_path: Path, ids: Devices
) -> None:
    settings = _served(pipeline, tmp_path, trusted_networks="127.0.0.0/8")
    async with _api(settings, tmp_path / "api.log") as client:
        await Fleet(client).enroll(ids.all)
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/api/v1/sensors/ingest", {"json": _equipment_reading(ids)}),
            (
                "POST",
                "/api/v1/sensors/ingest/batch",
                {"json": {"readings": [_equipment_reading(ids)]}},
            ),
        ]
        for method, path, options in requests:
            response = await client.request(method, path, **options)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["content-type"] == PROBLEM, path
            assert response.json()["status"] == 401


async def test_none_trusts_the_tcp_peer_not_a_forwarded_header(
    pipeline: Settings, tmp_path: Path, ids: Devices
) -> None:
    """The LAN is 10.0.0.0/8 and the request comes from loopback: an X-Forwarded-For naming
    the LAN must not open the route."""
    settings = _served(pipeline, tmp_path, seeds="001", trusted_networks="10.0.0.0/8")
    async with _api(settings, tmp_path / "api.log") as client:
        await Fleet(client).enroll([ids.equipment])
        response = await client.post(
            "/api/v1/sensors/ingest",
            json=_equipment_reading(ids),
            headers={"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3"},
        )
        assert response.status_code == 401, response.text


async def test_seed_002_s_anonymous_mqtt_test_publishes_for_registered_devices_only(
    pipeline: Settings, fleet: Fleet, tmp_path: Path, ids: Devices
) -> None:
    """Seed 002's own test connects without credentials and publishes on its topic: served
    from a trusted network for a registered device, PUBACKed once Kafka has it; an unknown
    device in the topic is refused (0x87), and the anonymous client, though it names the
    device's client id, does not take the device's session over."""
    settings = pipeline.model_copy(
        update={
            "mqtt_front": pipeline.mqtt_front.model_copy(
                update={"port": free_port(), "health_port": free_port()}
            ),
            "mqtt": pipeline.mqtt.model_copy(update={"manage_device_credentials": False}),
            "compat": CompatSettings(seeds="002", trusted_networks="127.0.0.0/8"),
        }
    )
    await fleet.enroll([ids.esp32])
    front = FrontProcess(settings, tmp_path / "front.log")
    front.start()
    try:
        await wait_until(lambda: _healthy(settings), timeout_s=60, what=front.log_tail)
        device = await connected(settings, ids.esp32, fleet.tokens[ids.esp32])
        anonymous = FrontDevice(settings, "-", "-", client_id=ids.esp32)
        anonymous.client.username_pw_set(None)  # seed 002's test: mqtt.connect(url), no user
        try:
            connack = await asyncio.to_thread(anonymous.connect)
            assert connack is not None and not connack.is_failure, connack
            topic = f"neurobuild/sensors/{ids.esp32}/data"
            payload = json.dumps(_esp32_reading(ids)).encode()
            assert await asyncio.to_thread(anonymous.publish, topic, payload) == 0
            stranger = "neurobuild/sensors/no-such-device/data"
            refused = await asyncio.to_thread(anonymous.publish, stranger, payload)
            assert refused == 0x87
            assert await asyncio.to_thread(device.publish, topic, payload) == 0  # still on
            assert not device.disconnected.is_set()
        finally:
            anonymous.close()
            device.close()
    finally:
        front.stop()
    assert "seed 002 topic neurobuild/sensors/+/data accepts auth mode none" in (
        (tmp_path / "front.log").read_text()
    )

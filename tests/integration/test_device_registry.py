"""The device registry through the real stack: admin API → Postgres → fleet.devices.v1 → the
device cache of every API instance."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from api.app import create_app
from connectors.kafka.registry import RegistryPublisher, RegistryRecord
from schemas.devices import decode_device, hash_token
from schemas.settings import Settings
from tests.factories import device_ids
from tests.integration.fleet import ADMIN, ADMIN_DEVICES
from tests.integration.kafka_tools import end_offsets
from tests.integration.registry_tools import latest, registry_records
from tests.support import wait_until

PROPAGATION_S = 5.0
"""The issue's promise: a change on one instance is enforced by every other within 5 s."""


@asynccontextmanager
async def api_instance(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            yield client


@pytest.fixture
async def api_a(pipeline: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_instance(pipeline) as client:
        yield client


@pytest.fixture
async def api_b(pipeline: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_instance(pipeline) as client:
        yield client


async def _create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(ADMIN_DEVICES, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _metadata(client: httpx.AsyncClient, device_id: str, token: str) -> int:
    """A device-authenticated request (seed 002's metadata update); returns the status."""
    response = await client.post(
        "/api/v1/devices/metadata",
        json={"device_id": device_id, "metadata": {"probe": True}},
        headers={"X-API-Key": token},
    )
    return response.status_code


async def _answers(client: httpx.AsyncClient, device_id: str, token: str, status: int) -> None:
    async def holds() -> bool:
        return await _metadata(client, device_id, token) == status

    await wait_until(
        holds, timeout_s=PROPAGATION_S, what=f"{device_id} to get {status}", poll_s=0.05
    )


def _records(settings: Settings) -> list[tuple[str, bytes | None]]:
    kafka = settings.kafka
    return registry_records(kafka.bootstrap_servers, settings.topics.devices, kafka.partitions)


async def test_admin_create_stores_the_hash_and_publishes_the_document(
    pipeline: Settings, api_a: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    device_id = device_ids(1)[0]
    created = await _create(
        api_a, device_id=device_id, profile="esp32", tags=["lobby"], metadata={"floor": 2}
    )
    token = created["token"]
    row = await db.fetchrow(
        "SELECT token_hash, tags, metadata::text AS metadata FROM devices WHERE device_id = $1",
        device_id,
    )
    assert row is not None
    assert row["token_hash"] == hash_token(token)
    assert list(row["tags"]) == ["lobby"]
    seen, value = latest(_records(pipeline), device_id)
    assert seen and value is not None
    assert token.encode() not in value
    document = decode_device(value)
    assert (document.token_hash, document.profile) == (hash_token(token), "esp32")

    listed = await api_a.get(ADMIN_DEVICES, params={"tag": "lobby", "search": device_id[:12]})
    assert listed.status_code == 401  # no admin token
    listed = await api_a.get(
        ADMIN_DEVICES, params={"tag": "lobby", "search": device_id}, headers=ADMIN
    )
    assert [d["device_id"] for d in listed.json()["items"]] == [device_id]


async def test_a_device_disabled_on_one_instance_is_refused_by_another_within_5s(
    api_a: httpx.AsyncClient, api_b: httpx.AsyncClient
) -> None:
    device_id = device_ids(1)[0]
    token = (await _create(api_a, device_id=device_id))["token"]
    await _answers(api_b, device_id, token, 200)

    response = await api_a.patch(
        f"{ADMIN_DEVICES}/{device_id}", json={"is_enabled": False}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    await _answers(api_b, device_id, token, 401)

    response = await api_a.patch(
        f"{ADMIN_DEVICES}/{device_id}", json={"is_enabled": True}, headers=ADMIN
    )
    assert response.status_code == 200
    await _answers(api_b, device_id, token, 200)


async def test_a_token_rotated_on_one_instance_is_refused_by_another_within_5s(
    api_a: httpx.AsyncClient, api_b: httpx.AsyncClient
) -> None:
    device_id = device_ids(1)[0]
    old = (await _create(api_a, device_id=device_id))["token"]
    await _answers(api_b, device_id, old, 200)

    response = await api_a.post(f"{ADMIN_DEVICES}/{device_id}/rotate-token", headers=ADMIN)
    assert response.status_code == 200, response.text
    new = response.json()["token"]
    await _answers(api_b, device_id, old, 401)
    assert await _metadata(api_b, device_id, new) == 200


async def test_a_token_used_for_another_device_is_403(
    api_a: httpx.AsyncClient, api_b: httpx.AsyncClient
) -> None:
    mine, other = device_ids(2)
    token = (await _create(api_a, device_id=mine))["token"]
    await _create(api_a, device_id=other)
    await _answers(api_b, mine, token, 200)
    assert await _metadata(api_b, other, token) == 403
    assert await _metadata(api_b, mine, "not-a-registered-token") == 401


async def test_delete_publishes_a_tombstone_and_every_instance_forgets_the_device(
    pipeline: Settings,
    api_a: httpx.AsyncClient,
    api_b: httpx.AsyncClient,
    db: asyncpg.Connection,
) -> None:
    device_id = device_ids(1)[0]
    token = (await _create(api_a, device_id=device_id))["token"]
    await _answers(api_b, device_id, token, 200)

    response = await api_a.delete(f"{ADMIN_DEVICES}/{device_id}", headers=ADMIN)
    assert response.status_code == 204
    assert await db.fetchval("SELECT count(*) FROM devices WHERE device_id = $1", device_id) == 0
    assert latest(_records(pipeline), device_id) == (True, None)
    await _answers(api_b, device_id, token, 401)
    missing = await api_b.get(f"{ADMIN_DEVICES}/{device_id}", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_readiness_reports_the_device_cache_and_postgres(api_a: httpx.AsyncClient) -> None:
    response = await api_a.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["kafka"], body["device_cache"], body["postgres"]) == (
        "ok",
        True,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", f"{ADMIN_DEVICES}/a%00b", 404),
        ("PATCH", f"{ADMIN_DEVICES}/a%00b", 404),
        ("DELETE", f"{ADMIN_DEVICES}/a%00b", 404),
        ("POST", f"{ADMIN_DEVICES}/a%00b/rotate-token", 404),
        ("GET", f"{ADMIN_DEVICES}?search=a%00", 422),
        ("GET", f"{ADMIN_DEVICES}?tag=a%00", 422),
        ("GET", f"{ADMIN_DEVICES}?profile=%00", 422),
    ],
)
async def test_ids_and_filters_postgres_cannot_hold_are_4xx_not_5xx(
    pipeline: Settings, api_a: httpx.AsyncClient, method: str, url: str, status: int
) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    response = await api_a.request(method, url, json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "\x00" not in response.json()["detail"]
    assert not latest(_records(pipeline), "a\x00b")[0]  # nothing published for it


async def test_metadata_postgres_cannot_hold_is_422_naming_the_field(
    api_a: httpx.AsyncClient,
) -> None:
    device_id = device_ids(1)[0]
    bodies = [
        f'{{"device_id": "{device_id}", "metadata": {{"where": "hall\\u0000"}}}}',
        f'{{"device_id": "{device_id}", "metadata": {{"level": NaN}}}}',
        f'{{"device_id": "{device_id}", "metadata": ' + '{"a":' * 300 + "1" + "}" * 301,
    ]
    for body in bodies:
        response = await api_a.post(
            ADMIN_DEVICES, content=body, headers={**ADMIN, "content-type": "application/json"}
        )
        assert response.status_code == 422, (body[:80], response.text)
        fields = [error["field"] for error in response.json()["errors"]]
        assert any(field.startswith("body") for field in fields), fields
    assert (await api_a.get(f"{ADMIN_DEVICES}/{device_id}", headers=ADMIN)).status_code == 404


async def test_a_device_cannot_move_itself_off_the_point_and_register_an_operator_set(
    pipeline: Settings, api_a: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Seed 002's metadata route with the device's own token: the operator's ``point_id`` and
    ``register_id`` stay in Postgres and on the topic; changing one is 403 naming it."""
    device_id = device_ids(1)[0]
    point, register = str(uuid.uuid4()), str(uuid.uuid4())
    token = (await _create(api_a, device_id=device_id, point_id=point, register_id=register))[
        "token"
    ]
    await _answers(api_a, device_id, token, 200)  # the cache knows the token
    pins = {"point_id": point, "register_id": register}

    async def stored() -> dict[str, Any]:
        text = await db.fetchval(
            "SELECT metadata::text FROM devices WHERE device_id = $1", device_id
        )
        return dict(json.loads(text))

    own = await api_a.post(
        "/api/v1/devices/metadata",
        json={"device_id": device_id, "metadata": {"firmware": "2.0"}},
        headers={"X-API-Key": token},
    )
    assert own.status_code == 200, own.text
    assert await stored() == {"firmware": "2.0", **pins}
    _, value = latest(_records(pipeline), device_id)
    assert value is not None and decode_device(value).metadata == {"firmware": "2.0", **pins}

    refused = await api_a.post(
        "/api/v1/devices/metadata",
        json={"device_id": device_id, "metadata": {"point_id": str(uuid.uuid4())}},
        headers={"X-API-Key": token},
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"][0]["field"] == "body.metadata.point_id"
    assert await stored() == {"firmware": "2.0", **pins}

    moved = await api_a.patch(
        f"{ADMIN_DEVICES}/{device_id}", json={"metadata": {"point_id": point}}, headers=ADMIN
    )
    assert moved.status_code == 200 and await stored() == {"point_id": point}


def test_a_publish_larger_than_the_producer_s_queue_is_acked_whole(pipeline: Settings) -> None:
    """A resync of a 150,000-device fleet: more records than librdkafka queues (100,000) at once.
    Published in one produce loop it failed with "Local: Queue full"."""
    kafka = pipeline.kafka
    records: list[RegistryRecord] = [(f"bulk-{n:06d}", b'{"n": %d}' % n) for n in range(150_000)]
    publisher = RegistryPublisher(kafka.bootstrap_servers, pipeline.topics.devices)
    try:
        publisher.publish(records)
    finally:
        publisher.close()
    assert end_offsets(kafka.bootstrap_servers, pipeline.topics.devices, kafka.partitions) == (
        len(records)
    )

"""The admin API and seed 002's metadata route on an in-memory registry: shapes, problem
documents, publish-after-commit and what a failed publish answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from connectors.registry import DeviceRegistry
from schemas.devices import decode_device, hash_token
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from tests.unit.registry_fakes import MemoryPublisher, MemoryStore, StaticCache

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def cache() -> StaticCache:
    return StaticCache()


@pytest.fixture
async def client(
    store: MemoryStore, publisher: MemoryPublisher, cache: StaticCache
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings())
    app.state.device_registry = DeviceRegistry(store, publisher)  # no lifespan: no services
    app.state.device_cache = cache
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        yield http


async def _create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/admin/devices", json=body, headers=ADMIN)


async def test_create_answers_the_token_once_stores_its_hash_and_publishes_the_document(
    client: httpx.AsyncClient, store: MemoryStore, publisher: MemoryPublisher
) -> None:
    response = await _create(
        client, device_id="esp-1", name="Lobby", tags=["hall"], metadata={"floor": 2}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    token = body.pop("token")
    assert "token_hash" not in body
    assert body["device_id"] == "esp-1" and body["tags"] == ["hall"] and body["is_enabled"]
    assert store.rows["esp-1"].token_hash == hash_token(token)
    value = publisher.latest()["esp-1"]
    assert value is not None and token.encode() not in value
    assert decode_device(value).token_hash == hash_token(token)
    shown = await client.get("/api/v1/admin/devices/esp-1", headers=ADMIN)
    assert shown.status_code == 200 and "token" not in shown.json()


async def test_seed_004_body_keeps_its_token_and_ids(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    point = "0b7e6a2c-3f1d-4c1a-9d6e-1f2a3b4c5d6e"
    token = "seed-004-token-plain"  # noqa: S105 - a test token
    response = await _create(client, device_id=point, token_plain=token, point_id=point)
    assert response.status_code == 201, response.text
    assert response.json()["token"] == token
    assert store.rows[point].metadata == {"point_id": point}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": "bad id"}, "body.device_id"),
        ({"device_id": "esp-1", "tags": ["ok", "not ok"]}, "body.tags.1"),
        ({"device_id": "esp-1", "metadata": {"where": "hall\u0000"}}, "body.metadata"),
        ({"device_id": "esp-1", "token_plain": "short"}, "body.token_plain"),
        ({"device_id": "esp-1", "inactivity_timeout_s": 0}, "body.inactivity_timeout_s"),
        ({"device_id": "esp-1", "colour": "red"}, "body.colour"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    client: httpx.AsyncClient, publisher: MemoryPublisher, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/admin/devices", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]
    assert publisher.sent == []


async def test_a_second_create_is_409_and_republishes_what_is_stored(
    client: httpx.AsyncClient, publisher: MemoryPublisher
) -> None:
    assert (await _create(client, device_id="esp-1")).status_code == 201
    again = await _create(client, device_id="esp-1")
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "device_id"
    assert [key for key, _ in publisher.sent] == ["esp-1", "esp-1"]


async def test_a_token_already_in_use_is_409_on_token_plain(client: httpx.AsyncClient) -> None:
    assert (await _create(client, device_id="esp-1", token_plain="x" * 20)).status_code == 201
    response = await _create(client, device_id="esp-2", token_plain="x" * 20)
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "token_plain"


async def test_a_failed_publish_is_503_and_a_retry_publishes_the_stored_change(
    client: httpx.AsyncClient, store: MemoryStore, publisher: MemoryPublisher
) -> None:
    assert (await _create(client, device_id="esp-1")).status_code == 201
    publisher.down = True
    path = "/api/v1/admin/devices/esp-1"
    failed = await client.patch(path, json={"is_enabled": False}, headers=ADMIN)
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == str(Settings().api.retry_after_s)
    assert store.rows["esp-1"].is_enabled is False  # committed, not yet on the topic
    published = publisher.latest()["esp-1"]
    assert published is not None and decode_device(published).is_enabled
    publisher.down = False
    retried = await client.patch(path, json={"is_enabled": False}, headers=ADMIN)
    assert retried.status_code == 200
    published = publisher.latest()["esp-1"]
    assert published is not None and not decode_device(published).is_enabled


async def test_patch_changes_only_what_was_sent_and_null_clears(
    client: httpx.AsyncClient,
) -> None:
    await _create(client, device_id="esp-1", name="Lobby", profile="esp32", tags=["a"])
    path = "/api/v1/admin/devices/esp-1"
    response = await client.patch(path, json={"name": None, "tags": ["b"]}, headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["profile"], body["tags"]) == (None, "esp32", ["b"])
    refused = await client.patch(path, json={"is_enabled": None}, headers=ADMIN)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.is_enabled"


async def test_rotate_returns_a_new_token_and_the_old_hash_is_gone(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    old = (await _create(client, device_id="esp-1")).json()["token"]
    response = await client.post("/api/v1/admin/devices/esp-1/rotate-token", headers=ADMIN)
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != old
    assert store.rows["esp-1"].token_hash == hash_token(new)


async def test_delete_publishes_a_tombstone_and_a_repeat_is_404_with_another(
    client: httpx.AsyncClient, publisher: MemoryPublisher
) -> None:
    await _create(client, device_id="esp-1")
    path = "/api/v1/admin/devices/esp-1"
    assert (await client.delete(path, headers=ADMIN)).status_code == 204
    assert publisher.sent[-1] == ("esp-1", None)
    again = await client.delete(path, headers=ADMIN)
    assert again.status_code == 404
    assert again.json()["errors"][0]["field"] == "device_id"
    assert publisher.sent[-1] == ("esp-1", None)
    assert (await client.get(path, headers=ADMIN)).status_code == 404


async def test_list_pages_through_devices(client: httpx.AsyncClient) -> None:
    for n in range(5):
        await _create(client, device_id=f"esp-{n}")
    response = await client.get("/api/v1/admin/devices?limit=2&offset=2", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert [d["device_id"] for d in body["items"]] == ["esp-2", "esp-3"]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 2)


async def test_every_admin_route_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    routes = [
        ("POST", "/api/v1/admin/devices"),
        ("GET", "/api/v1/admin/devices"),
        ("GET", "/api/v1/admin/devices/esp-1"),
        ("PATCH", "/api/v1/admin/devices/esp-1"),
        ("POST", "/api/v1/admin/devices/esp-1/rotate-token"),
        ("DELETE", "/api/v1/admin/devices/esp-1"),
    ]
    for method, path in routes:
        response = await client.request(
            method, path, json={}, headers={"Authorization": "Bearer x"}
        )
        assert response.status_code == 401, (method, path)


async def test_seed_002_metadata_by_the_device_itself_by_admin_not_by_another_device(
    client: httpx.AsyncClient, publisher: MemoryPublisher, cache: StaticCache, store: MemoryStore
) -> None:
    token_1 = (await _create(client, device_id="esp-1")).json()["token"]
    await _create(client, device_id="esp-2")
    cache.follow(publisher)
    path = "/api/v1/devices/metadata"
    own = await client.post(
        path,
        json={"device_id": "esp-1", "metadata": {"location": "hall"}},
        headers={"X-API-Key": token_1},
    )
    assert own.status_code == 200, own.text
    assert store.rows["esp-1"].metadata == {"location": "hall"}
    other = await client.post(
        path, json={"device_id": "esp-2", "metadata": {}}, headers={"X-API-Key": token_1}
    )
    assert other.status_code == 403
    anonymous = await client.post(path, json={"device_id": "esp-2", "metadata": {}})
    assert anonymous.status_code == 401
    by_admin = await client.post(
        path, json={"device_id": "esp-2", "metadata": {"floor": 3}}, headers=ADMIN
    )
    assert by_admin.status_code == 200
    assert store.rows["esp-2"].metadata == {"floor": 3}


async def test_a_devices_own_metadata_update_keeps_the_operators_point_and_register(
    client: httpx.AsyncClient, publisher: MemoryPublisher, cache: StaticCache, store: MemoryStore
) -> None:
    point, register = "5d6f7a1e-0b8c-4e2f-9a31-7c1d2e3f4a5b", "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    created = await _create(client, device_id="rec-1", point_id=point, register_id=register)
    token = created.json()["token"]
    cache.follow(publisher)
    path = "/api/v1/devices/metadata"
    pins = {"point_id": point, "register_id": register}

    # Left out (seed 002 firmware knows nothing of them): kept, stored and published so.
    own = await client.post(
        path, json={"device_id": "rec-1", "metadata": {"fw": "2"}}, headers={"X-API-Key": token}
    )
    assert own.status_code == 200, own.text
    assert own.json()["metadata"] == {"fw": "2", **pins}
    assert store.rows["rec-1"].metadata == {"fw": "2", **pins}
    published = publisher.latest()["rec-1"]
    assert published is not None and decode_device(published).metadata == {"fw": "2", **pins}

    # Changed or cleared by the device: 403 naming the field, nothing stored or published.
    sent = len(publisher.sent)
    for change in ({"point_id": None}, {"register_id": "00000000-0000-4000-8000-000000000000"}):
        refused = await client.post(
            path,
            json={"device_id": "rec-1", "metadata": {"fw": "3", **change}},
            headers={"X-API-Key": token},
        )
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        (key,) = change
        assert refused.json()["errors"][0]["field"] == f"body.metadata.{key}"
    assert store.rows["rec-1"].metadata == {"fw": "2", **pins}
    assert len(publisher.sent) == sent

    # The admin token may change them, here (replaced whole) or through the admin API.
    moved = {"point_id": "0b7e6a2c-3f1d-4c1a-9d6e-1f2a3b4c5d6e", "register_id": register}
    by_admin = await client.post(
        path, json={"device_id": "rec-1", "metadata": moved}, headers=ADMIN
    )
    assert by_admin.status_code == 200 and store.rows["rec-1"].metadata == moved
    patched = await client.patch(
        "/api/v1/admin/devices/rec-1", json={"metadata": {}}, headers=ADMIN
    )
    assert patched.status_code == 200 and store.rows["rec-1"].metadata == {}

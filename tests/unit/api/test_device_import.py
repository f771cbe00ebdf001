"""``POST /api/v1/admin/devices/import`` on an in-memory registry: the answer's shape, all or
nothing validation, existing ids left alone and published again, the 409 and the 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.device_models import IMPORT_MAX_BODY_BYTES
from connectors.registry import DeviceRegistry
from schemas.devices import decode_device, hash_token
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from tests.unit.registry_fakes import MemoryPublisher, MemoryStore, StaticCache

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
IMPORT = "/api/v1/admin/devices/import"
GIVEN = "a-given-token-0001"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
async def client(
    store: MemoryStore, publisher: MemoryPublisher
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings())
    app.state.device_registry = DeviceRegistry(store, publisher)  # no lifespan: no services
    app.state.device_cache = StaticCache()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        yield http


async def _import(client: httpx.AsyncClient, *devices: dict[str, Any]) -> httpx.Response:
    return await client.post(IMPORT, json={"devices": list(devices)}, headers=ADMIN)


def _fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [error["field"] for error in response.json()["errors"]]


async def test_import_answers_tokens_stores_hashes_and_publishes_each_device(
    client: httpx.AsyncClient, store: MemoryStore, publisher: MemoryPublisher
) -> None:
    response = await _import(
        client,
        {"device_id": "a", "token_plain": GIVEN, "tags": ["t"]},
        {"device_id": "b", "is_enabled": False},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["existing"] == []
    tokens = {item["device_id"]: item["token"] for item in body["created"]}
    assert list(tokens) == ["a", "b"] and tokens["a"] == GIVEN and len(tokens["b"]) == 43
    for device_id, token in tokens.items():
        assert store.rows[device_id].token_hash == hash_token(token)
        value = publisher.latest()[device_id]
        assert value is not None and decode_device(value).token_hash == hash_token(token)
    assert store.rows["a"].tags == ["t"] and not store.rows["b"].is_enabled


async def test_reimport_leaves_existing_devices_alone_and_publishes_them_again(
    client: httpx.AsyncClient, store: MemoryStore, publisher: MemoryPublisher
) -> None:
    assert (await _import(client, {"device_id": "a", "token_plain": GIVEN})).status_code == 200
    before = store.rows["a"]
    publisher.sent.clear()
    response = await _import(client, {"device_id": "a", "name": "changed?"}, {"device_id": "c"})
    assert response.status_code == 200
    body = response.json()
    assert body["existing"] == ["a"] and [c["device_id"] for c in body["created"]] == ["c"]
    assert store.rows["a"] == before
    assert set(publisher.latest()) == {"a", "c"}  # a stored-but-unpublished run is repaired


@pytest.mark.parametrize(
    ("devices", "field"),
    [
        ([{"device_id": "a"}, {"device_id": "b", "profile": "-x"}], "body.devices.1.profile"),
        ([{"device_id": "a"}, {"device_id": "a"}], "body.devices.1.device_id"),
        (
            [{"device_id": "a", "token_plain": GIVEN}, {"device_id": "b", "token_plain": GIVEN}],
            "body.devices.1.token_plain",
        ),
        ([{"device_id": "a", "metadata": {"k": "\x01"}}], "body.devices.0.metadata"),
        ([], "body.devices"),
        ([{"device_id": f"d{n}"} for n in range(10_001)], "body.devices"),
    ],
)
async def test_any_bad_item_fails_the_whole_import_naming_it(
    client: httpx.AsyncClient,
    store: MemoryStore,
    publisher: MemoryPublisher,
    devices: list[dict[str, Any]],
    field: str,
) -> None:
    response = await client.post(IMPORT, json={"devices": devices}, headers=ADMIN)
    assert response.status_code == 422, response.text[:500]
    assert _fields(response) == [field]
    assert store.rows == {} and publisher.sent == []


async def test_a_token_of_another_device_is_409_naming_the_item_and_stores_nothing(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    assert (await _import(client, {"device_id": "holder", "token_plain": GIVEN})).status_code == 200
    response = await _import(client, {"device_id": "a"}, {"device_id": "b", "token_plain": GIVEN})
    assert response.status_code == 409
    assert _fields(response) == ["body.devices.1.token_plain"]
    assert set(store.rows) == {"holder"}


async def test_a_broker_that_does_not_ack_is_503_carrying_the_stored_devices_tokens(
    client: httpx.AsyncClient, store: MemoryStore, publisher: MemoryPublisher
) -> None:
    publisher.down = True
    response = await _import(client, {"device_id": "a"})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    created = response.json()["created"]
    assert [c["device_id"] for c in created] == ["a"]
    assert store.rows["a"].token_hash == hash_token(created[0]["token"])

    publisher.down = False
    retried = await _import(client, {"device_id": "a"})
    assert retried.json() == {"created": [], "existing": ["a"]}
    assert "a" in publisher.latest()


async def test_import_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    response = await client.post(IMPORT, json={"devices": [{"device_id": "a"}]})
    assert response.status_code == 401


async def test_the_import_body_may_pass_the_default_limit_up_to_its_own(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    name = "n" * 200
    devices = [{"device_id": f"d{n}", "name": name} for n in range(5_000)]  # ~1.1 MB
    response = await client.post(IMPORT, json={"devices": devices}, headers=ADMIN)
    assert response.status_code == 200, response.text[:500]
    assert len(store.rows) == 5_000

    too_big = b"x" * (IMPORT_MAX_BODY_BYTES + 1)
    refused = await client.post(
        IMPORT, content=too_big, headers={**ADMIN, "content-type": "application/json"}
    )
    assert refused.status_code == 413


SEED004_TOKEN = "seed004-recorder-token-0001"  # noqa: S105 - a test token
POINT = "0b7b3a4e-3c2d-4f5e-8a9b-0c1d2e3f4a5b"


async def test_a_seed004_hash_is_stored_as_given_and_no_token_is_answered(
    client: httpx.AsyncClient, store: MemoryStore, publisher: MemoryPublisher
) -> None:
    # Seed 004 stores hex SHA-256 digests; either case is the same digest.
    stored = hash_token(SEED004_TOKEN).upper()
    response = await _import(
        client,
        {"device_id": "rec-1", "token_sha256": stored, "point_id": POINT, "register_id": POINT},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == [{"device_id": "rec-1", "token": None}]
    assert store.rows["rec-1"].token_hash == hash_token(SEED004_TOKEN)
    value = publisher.latest()["rec-1"]
    assert value is not None and decode_device(value).token_hash == hash_token(SEED004_TOKEN)
    assert store.rows["rec-1"].metadata == {"point_id": POINT, "register_id": POINT}


async def test_token_sha256_is_refused_with_token_plain_when_not_a_digest_and_when_repeated(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    both = await _import(
        client, {"device_id": "a", "token_plain": GIVEN, "token_sha256": hash_token(GIVEN)}
    )
    assert both.status_code == 422 and _fields(both) == ["body.devices.0"]
    short = await _import(client, {"device_id": "a", "token_sha256": "ab" * 31})
    assert short.status_code == 422 and _fields(short) == ["body.devices.0.token_sha256"]
    # A plain token and its hash are one token: two devices cannot share it.
    same = await _import(
        client,
        {"device_id": "a", "token_plain": GIVEN},
        {"device_id": "b", "token_sha256": hash_token(GIVEN)},
    )
    assert same.status_code == 422 and _fields(same) == ["body.devices.1.token_sha256"]
    assert store.rows == {}


async def test_the_single_create_route_takes_no_hash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/admin/devices",
        json={"device_id": "a", "token_sha256": hash_token(GIVEN)},
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert _fields(response) == ["body.token_sha256"]

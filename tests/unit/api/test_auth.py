"""Auth decisions at the edge: 401 vs 403 vs 503 (cache not caught up), admin bearer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import SecretStr

from api.auth import AdminDep, DeviceAuthDep, authenticate_device, require_device
from api.problems import install_problem_handlers
from schemas.settings import Settings
from tests.unit.registry_fakes import StaticCache, device_record

TOKEN_A = "token-of-device-a-0123"  # noqa: S105 - a test token
TOKEN_B = "token-of-device-b-0123"  # noqa: S105 - a test token
TOKEN_OFF = "token-of-disabled-0123"  # noqa: S105 - a test token
ADMIN = "admin-token-for-tests"


@pytest.fixture
def cache() -> StaticCache:
    cache = StaticCache()
    cache.index.apply(b"dev-a", device_record("dev-a", TOKEN_A))
    cache.index.apply(b"dev-b", device_record("dev-b", TOKEN_B))
    cache.index.apply(b"dev-off", device_record("dev-off", TOKEN_OFF, enabled=False))
    return cache


def _app(cache: StaticCache, *, allow_unauthenticated: bool = False) -> FastAPI:
    base = Settings()
    auth = base.auth.model_copy(
        update={
            "admin_token": SecretStr(ADMIN),
            "allow_unauthenticated_ingest": allow_unauthenticated,
        }
    )
    app = FastAPI()
    app.state.settings = base.model_copy(update={"auth": auth})
    app.state.device_cache = cache
    install_problem_handlers(app, retry_after_s=base.api.retry_after_s)

    @app.post("/write/{device_id}")
    async def write(device_id: str, request: Request) -> dict[str, str | None]:
        device = await authenticate_device(request, device_id)
        return {"as": device.device_id if device else None}

    @app.post("/batch")
    async def batch(principal: DeviceAuthDep, body: list[str]) -> dict[str, int]:
        for device_id in body:
            require_device(principal, device_id)
        return {"accepted": len(body)}

    @app.get("/admin")
    async def admin(_: AdminDep) -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture
async def client(cache: StaticCache) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(cache))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        yield http


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": TOKEN_A}, {"Authorization": f"Bearer {TOKEN_A}"}],
    ids=["x-api-key", "bearer"],
)
async def test_a_device_writes_its_own_id_with_either_header(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/write/dev-a", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"as": "dev-a"}


async def test_another_devices_id_is_403_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/write/dev-b", headers={"X-API-Key": TOKEN_A})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "device_id"


async def test_one_foreign_id_in_a_batch_refuses_the_request(client: httpx.AsyncClient) -> None:
    ok = await client.post("/batch", json=["dev-a", "dev-a"], headers={"X-API-Key": TOKEN_A})
    assert ok.status_code == 200
    mixed = await client.post("/batch", json=["dev-a", "dev-b"], headers={"X-API-Key": TOKEN_A})
    assert mixed.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "not-a-registered-token"},
        {"Authorization": "Bearer not-a-registered-token"},
        {"Authorization": f"Basic {TOKEN_A}"},
        {"X-API-Key": TOKEN_OFF},
        {"Authorization": f"Bearer {ADMIN}"},
    ],
    ids=["missing", "unknown-key", "unknown-bearer", "not-bearer", "disabled", "admin-token"],
)
async def test_missing_wrong_or_disabled_credentials_are_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/write/dev-a", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_disabled_device_is_401_even_for_its_own_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/write/dev-off", headers={"X-API-Key": TOKEN_OFF})
    assert response.status_code == 401
    assert "disabled" in response.json()["detail"]


async def test_before_the_cache_caught_up_every_device_request_is_503_never_401(
    cache: StaticCache, client: httpx.AsyncClient
) -> None:
    cache.caught_up = False
    for headers in ({"X-API-Key": TOKEN_A}, {"X-API-Key": "unknown-token-0123456"}):
        response = await client.post("/write/dev-a", headers=headers)
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(Settings().api.retry_after_s)
        assert response.headers["content-type"] == "application/problem+json"


async def test_unauthenticated_ingest_when_allowed_still_checks_sent_credentials(
    cache: StaticCache,
) -> None:
    transport = httpx.ASGITransport(app=_app(cache, allow_unauthenticated=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as http:
        anonymous = await http.post("/write/anything")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"as": None}
        wrong = await http.post("/write/dev-a", headers={"X-API-Key": "unknown-token-0123456"})
        assert wrong.status_code == 401
        foreign = await http.post("/write/dev-b", headers={"X-API-Key": TOKEN_A})
        assert foreign.status_code == 403


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": f"Bearer {ADMIN}"}, 200),
        ({"Authorization": f"bearer {ADMIN}"}, 200),
        ({}, 401),
        ({"Authorization": f"Bearer {ADMIN}x"}, 401),
        ({"Authorization": f"Bearer {ADMIN[:-1]}"}, 401),
        ({"X-API-Key": ADMIN}, 401),
        ({"Authorization": f"Bearer {TOKEN_A}"}, 401),
    ],
)
async def test_admin_routes_need_the_admin_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    response = await client.get("/admin", headers=headers)
    assert response.status_code == status

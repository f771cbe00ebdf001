"""Auth modes of the seed routes under their profiles (api/compat_auth.py): each decision, and
the broken implementation each test catches."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from api.auth import (
    DeviceAuthDep,
    authenticate_device,
    authenticated_device,
    owns,
    principal_scope,
)
from api.compat_auth import CompatAuth, TrustedCaller, install_seed_error_handler, route_table
from api.edge import require_own_readings
from api.limits import RateLimiter
from api.problems import ProblemError, install_problem_handlers
from schemas.settings import CompatSettings, RateLimit, Settings
from tests import clock
from tests.unit.registry_fakes import StaticCache, device_record

TOKEN_A = "token-of-device-a-0123"  # noqa: S105 - a test token
TOKEN_OFF = "token-of-disabled-0123"  # noqa: S105 - a test token
SECRET = "a-jwt-secret-long-enough-for-hs256-and-for-hs512-which-wants-64-bytes"  # noqa: S105 - a test secret
LAN = ("10.1.2.3", 50000)
OUTSIDE = ("192.0.2.7", 50000)
PROBLEM = "application/problem+json"


@pytest.fixture
def cache() -> StaticCache:
    cache = StaticCache()
    cache.index.apply(b"dev-a", device_record("dev-a", TOKEN_A))
    cache.index.apply(b"dev-b", device_record("dev-b", "token-of-device-b-0123"))
    cache.index.apply(b"dev-off", device_record("dev-off", TOKEN_OFF, enabled=False))
    return cache


def _compat(seeds: str = "001,002,003", networks: str = "10.0.0.0/8", secret: str = SECRET) -> Any:
    return CompatSettings(seeds=seeds, trusted_networks=networks, jwt_secret=SecretStr(secret))


def _app(cache: StaticCache, compat: CompatSettings, burst: int = 100) -> FastAPI:
    """Handlers at the seeds' paths (the modes are looked up by route template), written the
    way the real routes use the auth functions."""
    app = FastAPI()
    app.state.settings = Settings()
    app.state.device_cache = cache
    limiter = RateLimiter(RateLimit(per_s=0.001, burst=burst), {}, clock=lambda: 0.0)
    app.state.compat_auth = CompatAuth(compat, limiter, lambda: None, clock.now)
    install_problem_handlers(app, retry_after_s=2)
    install_seed_error_handler(app)

    async def ingest(principal: DeviceAuthDep, body: list[str]) -> dict[str, Any]:
        require_own_readings(principal, body)
        return {"anonymous": isinstance(principal, TrustedCaller), "as": _name(principal)}

    app.post("/api/v1/sensors/ingest")(ingest)
    app.post("/api/v1/sensors/ingest/batch")(ingest)
    app.post("/api/v1/sensor-data")(ingest)
    app.post("/api/v1/chunks")(ingest)

    @app.get("/api/v1/sensors/{equipment_id}/latest")
    async def latest(request: Request, equipment_id: str) -> dict[str, Any]:
        await authenticate_device(request, equipment_id)
        return {"equipment_id": equipment_id}

    @app.get("/api/v1/ingest/status/{request_id}")
    async def status(request: Request, request_id: str) -> dict[str, Any]:
        # here the request id is its owner's device id
        if not owns(authenticated_device(request), request_id):
            raise ProblemError(404, "Not found", "no such request")
        return {"owner": request_id}

    return app


def _name(principal: Any) -> str | None:
    return None if principal is None else principal.device_id or None


def _client(app: FastAPI, peer: tuple[str, int] = LAN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://fleet.test")


@pytest.fixture
async def lan(cache: StaticCache) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_app(cache, _compat())) as http:
        yield http


# ---- none ---------------------------------------------------------------------------------


async def test_none_serves_a_registered_enabled_device_from_a_trusted_network(
    lan: httpx.AsyncClient,
) -> None:
    response = await lan.post("/api/v1/sensors/ingest", json=["dev-a"])
    assert response.status_code == 200, response.text
    assert response.json() == {"anonymous": True, "as": None}


async def test_none_refuses_an_untrusted_peer_with_the_canonical_401(cache: StaticCache) -> None:
    """Catches "none" that forgets the network check."""
    async with _client(_app(cache, _compat()), OUTSIDE) as http:
        response = await http.post("/api/v1/sensors/ingest", json=["dev-a"])
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


async def test_none_with_no_trusted_network_serves_nobody(cache: StaticCache) -> None:
    """Catches an empty FLEET_COMPAT__TRUSTED_NETWORKS read as "everyone"."""
    async with _client(_app(cache, _compat(networks=""))) as http:
        response = await http.post("/api/v1/sensors/ingest", json=["dev-a"])
    assert response.status_code == 401


@pytest.mark.parametrize("device_id", ["dev-unknown", "dev-off"], ids=["unknown", "disabled"])
async def test_none_refuses_an_unknown_or_disabled_device_naming_the_field(
    lan: httpx.AsyncClient, device_id: str
) -> None:
    """Catches "none" that accepts any id, or a disabled device's."""
    response = await lan.post("/api/v1/sensors/ingest", json=[device_id])
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"] == [
        {
            "field": "device_id",
            "message": "not a registered, enabled device",
            "type": "unknown_device",
        }
    ]


async def test_none_names_each_refused_item_of_a_batch(lan: httpx.AsyncClient) -> None:
    response = await lan.post("/api/v1/sensors/ingest/batch", json=["dev-a", "nope", "dev-off"])
    assert response.status_code == 403
    assert [error["index"] for error in response.json()["errors"]] == [1, 2]


async def test_none_is_rate_limited_per_device(cache: StaticCache) -> None:
    """Catches a "none" path that skips the limiter, or one bucket for all anonymous callers."""
    async with _client(_app(cache, _compat(), burst=2)) as http:
        codes = [(await http.post("/api/v1/sensors/ingest", json=["dev-a"])).status_code]
        codes.append((await http.post("/api/v1/sensors/ingest", json=["dev-a"])).status_code)
        limited = await http.post("/api/v1/sensors/ingest", json=["dev-a"])
        other = await http.post("/api/v1/sensors/ingest", json=["dev-b"])
    assert codes == [200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200


async def test_none_still_checks_credentials_that_are_sent(lan: httpx.AsyncClient) -> None:
    """Catches a bad token falling back to the anonymous path."""
    response = await lan.post(
        "/api/v1/sensors/ingest", json=["dev-a"], headers={"X-API-Key": "wrong-token-01234567"}
    )
    assert response.status_code == 401
    own = await lan.post("/api/v1/sensors/ingest", json=["dev-a"], headers={"X-API-Key": TOKEN_A})
    assert own.json() == {"anonymous": False, "as": "dev-a"}


async def test_none_before_the_registry_is_read_is_503(
    cache: StaticCache, lan: httpx.AsyncClient
) -> None:
    """Catches "unknown device" answered while the cache may still be missing it."""
    cache.caught_up = False
    response = await lan.post("/api/v1/sensors/ingest", json=["dev-a"])
    assert response.status_code == 503


async def test_profile_off_keeps_the_canonical_401(cache: StaticCache) -> None:
    """Catches modes applied to a seed whose profile is off (seed 001 here)."""
    async with _client(_app(cache, _compat(seeds="002,003"))) as http:
        response = await http.post("/api/v1/sensors/ingest", json=["dev-a"])
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


async def test_a_route_of_another_seed_is_not_opened_by_none(lan: httpx.AsyncClient) -> None:
    """Seed 004's chunks keep their Bearer token while seeds 001-003 are on."""
    response = await lan.post("/api/v1/chunks", json=["dev-a"])
    assert response.status_code == 401


async def test_none_reads_only_registered_devices(lan: httpx.AsyncClient) -> None:
    assert (await lan.get("/api/v1/sensors/dev-a/latest")).status_code == 200
    assert (await lan.get("/api/v1/sensors/dev-nope/latest")).status_code == 403


async def test_a_status_without_credentials_is_shown_only_for_a_registered_owner(
    lan: httpx.AsyncClient,
) -> None:
    """Catches owns() that lets the anonymous caller see anything, or nothing."""
    assert (await lan.get("/api/v1/ingest/status/dev-a")).status_code == 200
    assert (await lan.get("/api/v1/ingest/status/dev-off")).status_code == 404


# ---- seed 002: x-api-key and its 401 bodies ----------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "Missing API key"),
        ({"X-API-Key": "not-a-registered-key-0"}, "Invalid API key"),
        ({"X-API-Key": TOKEN_OFF}, "Invalid API key"),
        ({"Authorization": "Bearer"}, "No token provided"),
        ({"Authorization": "Bearer not.a.jwt"}, "Invalid token"),
        ({"Authorization": f"Basic {TOKEN_A}"}, "Invalid token"),
        ({"X-API-Key": ""}, "Missing API key"),
    ],
    ids=["missing", "unknown", "disabled", "empty-bearer", "garbage-bearer", "basic", "empty-key"],
)
async def test_seed_002_answers_401_with_its_own_bodies(
    lan: httpx.AsyncClient, headers: dict[str, str], error: str
) -> None:
    response = await lan.post("/api/v1/sensor-data", json=["dev-a"], headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": error}
    assert response.headers["content-type"] == "application/json"


async def test_seed_002_takes_the_devices_token_as_its_api_key(lan: httpx.AsyncClient) -> None:
    response = await lan.post("/api/v1/sensor-data", json=["dev-a"], headers={"X-API-Key": TOKEN_A})
    assert response.json() == {"anonymous": False, "as": "dev-a"}


async def test_seed_002_without_jwts_ignores_the_bearer_header_as_the_seed_did(
    cache: StaticCache,
) -> None:
    async with _client(_app(cache, _compat(secret=""))) as http:
        response = await http.post(
            "/api/v1/sensor-data", json=["dev-a"], headers={"Authorization": "Bearer x.y.z"}
        )
    assert response.json() == {"error": "Missing API key"}


async def test_seed_002_is_not_served_without_credentials_even_from_the_lan(
    lan: httpx.AsyncClient,
) -> None:
    """Its sensor-data routes are x-api-key/JWT, never "none"."""
    response = await lan.post("/api/v1/sensor-data", json=["dev-a"])
    assert response.status_code == 401


async def test_seed_002_profile_off_answers_problem_json(cache: StaticCache) -> None:
    async with _client(_app(cache, _compat(seeds="001"))) as http:
        response = await http.post("/api/v1/sensor-data", json=["dev-a"])
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


# ---- seed 002: JWT ---------------------------------------------------------------------------


def _jwt(claims: dict[str, Any], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _in(seconds: float) -> int:
    return int((clock.now() + timedelta(seconds=seconds)).timestamp())


async def test_a_jwt_signed_with_the_secret_names_its_device(lan: httpx.AsyncClient) -> None:
    token = _jwt({"device_id": "dev-a", "exp": _in(60)})
    response = await lan.post(
        "/api/v1/sensor-data", json=["dev-a"], headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json() == {"anonymous": False, "as": "dev-a"}


@pytest.mark.parametrize(
    "token",
    [
        lambda: _jwt({"device_id": "dev-a"}, key="another-secret-long-enough-for-hs256-0123"),
        lambda: _jwt({"device_id": "dev-a", "exp": _in(-1)}),
        lambda: _jwt({"device_id": "dev-a", "nbf": _in(60)}),
        lambda: _unsigned({"device_id": "dev-a"}),
        lambda: _jwt({"device_id": "dev-a"}, algorithm="HS512"),
        lambda: _jwt({"sub": "dev-a"}),
        lambda: _jwt({"device_id": "dev-nope"}),
        lambda: _jwt({"device_id": "dev-off"}),
        lambda: _jwt({"device_id": "dev-a", "exp": "tomorrow"}),
    ],
    ids=[
        "bad-signature",
        "expired",
        "not-yet-valid",
        "alg-none",
        "hs512",
        "no-device-claim",
        "unknown-device",
        "disabled-device",
        "exp-not-a-number",
    ],
)
async def test_a_jwt_that_does_not_verify_is_invalid_token(
    lan: httpx.AsyncClient, token: Callable[[], str]
) -> None:
    """Catches a verifier that skips the signature, exp/nbf, the algorithm list, or the
    registry check of the device it names."""
    response = await lan.post(
        "/api/v1/sensor-data", json=["dev-a"], headers={"Authorization": f"Bearer {token()}"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token"}


async def test_a_jwt_writes_only_its_own_device(lan: httpx.AsyncClient) -> None:
    token = _jwt({"device_id": "dev-a"})
    response = await lan.post(
        "/api/v1/sensor-data", json=["dev-b"], headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


async def test_jwts_are_refused_where_the_seed_does_not_document_them(
    lan: httpx.AsyncClient,
) -> None:
    """Seed 001's route is "none": a JWT there is an unknown token, not a credential."""
    token = _jwt({"device_id": "dev-a"})
    response = await lan.post(
        "/api/v1/sensors/ingest", json=["dev-a"], headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


# ---- the table, its log lines and metrics, settings -------------------------------------


def test_modes_follow_the_profiles_and_the_secret() -> None:
    table = route_table(_compat(seeds="001,002,004", secret=""))
    modes = {path: route.modes for (_, path), route in table.items()}
    assert modes["/api/v1/sensors/ingest"] == ("none", "api-key", "bearer")
    assert modes["/api/v1/sensor-data"] == ("api-key", "bearer")
    assert modes["/api/v1/chunks"] == ("api-key", "bearer")
    assert "/api/v1/ingest/upload" not in modes
    with_jwt = route_table(_compat(seeds="002"))
    assert with_jwt["POST", "/api/v1/sensor-data"].modes == ("jwt", "api-key", "bearer")
    assert route_table(_compat(seeds="")) == {}


def test_each_route_and_mode_is_logged_and_exported(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    limiter = RateLimiter(RateLimit(per_s=1, burst=1), {})
    compat = CompatAuth(_compat(seeds="001"), limiter, lambda: None)
    with caplog.at_level(logging.INFO, logger="api.compat_auth"):
        compat.publish(registry)
    lines = [r.getMessage() for r in caplog.records if "accepts auth mode" in r.getMessage()]
    assert len(lines) == 9  # 3 routes x (none, api-key, bearer)
    assert "seed 001 route POST /api/v1/sensors/ingest accepts auth mode none" in lines[0]
    value = registry.get_sample_value(
        "fleet_compat_route_auth", {"route": "/api/v1/sensors/ingest", "mode": "none"}
    )
    assert value == 1.0
    assert any(
        "anyone there can post as any registered device" in r.getMessage() for r in caplog.records
    )


def test_a_short_jwt_secret_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="FLEET_COMPAT__JWT_SECRET"):
        CompatSettings(seeds="002", jwt_secret=SecretStr("too-short"))


def test_requests_without_credentials_keep_their_idempotency_keys_per_device(
    cache: StaticCache,
) -> None:
    """Catches one shared scope, where one device's key would answer for another's readings."""
    limiter = RateLimiter(RateLimit(per_s=1, burst=1), {})
    caller = CompatAuth(_compat(), limiter, lambda: None).trusted_caller(cache, "10.0.0.1")
    assert principal_scope(caller, ["dev-a"]) == "dev-a"
    assert principal_scope(caller, ["dev-b"]) == "dev-b"
    assert principal_scope(caller, ["dev-a", "dev-b"]) != principal_scope(caller, ["dev-a"])

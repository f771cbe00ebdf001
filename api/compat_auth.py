"""Auth modes of the seed routes under their compatibility profiles (docs/compat.md).

With a seed's profile on (``FLEET_COMPAT__SEEDS``) its routes accept the seed's own scheme, in
production too, beside the canonical device token (``X-API-Key`` or ``Authorization: Bearer``,
always checked when sent):

* ``none``: seed 001 ("Authentication: None"), seed 003 (its curl examples send no
  credentials) and seed 002's service-to-service metadata call. A request without credentials
  is served only when its TCP peer is in ``FLEET_COMPAT__TRUSTED_NETWORKS`` (empty: nobody), and
  only for the device ids it names that are registered and enabled (403 otherwise), each
  charged to that device's rate limit (429). Anyone on those networks can post as any
  registered device: that is what the seeds did, narrowed to named networks.
* ``api-key``: the device's own token in ``X-API-Key`` (seeds 000 and 002). Seed 002's
  middleware asks the device management service to ``verifyApiKey`` and gets the device back, so
  a key names one device: our registry is that service, and the key is the device's token.
* ``jwt``: seed 002's variant, ``Authorization: Bearer <JWT>`` verified with
  ``FLEET_COMPAT__JWT_SECRET`` (HS256 only; ``exp``/``nbf`` checked when present, as
  ``jsonwebtoken.verify`` does). The seed sets ``req.device = decoded`` and names a device by
  ``device_id`` everywhere, so the claim ``device_id`` names the device; it must be registered
  and enabled, and is then the caller exactly as if it had sent its token.
* ``bearer``: the device's token as ``Authorization: Bearer`` (seed 004, as canonical).

Seed 002's sensor-data routes answer 401 with the seed's bodies (``{"error": "Missing API
key"}``, ``"Invalid API key"``, and with JWTs on ``"No token provided"``, ``"Invalid token"``);
every other refusal keeps its problem document, since the seeds do not state one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Gauge

from api.limits import RateLimiter, retry_after_header
from api.problems import ProblemError
from schemas.clock import Clock, utc_now
from schemas.devices import Device
from schemas.settings import CompatSettings

log = logging.getLogger(__name__)

NONE = "none"
API_KEY = "api-key"
BEARER = "bearer"
JWT = "jwt"
CANONICAL = (API_KEY, BEARER)
"""What every device route takes: the device's token in either header."""

JWT_DEVICE_CLAIM = "device_id"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SEED_ROUTES: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "000": (("POST", "/api/v1/ingest/chirpstack", ()),),
    "001": (
        ("POST", "/api/v1/sensors/ingest", (NONE,)),
        ("POST", "/api/v1/sensors/ingest/batch", (NONE,)),
        ("GET", "/api/v1/sensors/{equipment_id}/latest", (NONE,)),
    ),
    "002": (
        ("POST", "/api/v1/sensor-data", (JWT,)),
        ("POST", "/api/v1/sensor-data/batch", (JWT,)),
        ("POST", "/api/v1/devices/metadata", (NONE,)),
    ),
    "003": (
        ("POST", "/api/v1/ingest/upload", (NONE,)),
        ("POST", "/api/v1/ingest/rtsp", (NONE,)),
        ("GET", "/api/v1/ingest/status/{request_id}", (NONE,)),
    ),
    "004": (("POST", "/api/v1/chunks", ()),),
}
"""Each seed's routes and the modes its profile adds to the canonical ones."""

_SEED_ERROR_ROUTES = frozenset({"/api/v1/sensor-data", "/api/v1/sensor-data/batch"})
"""The routes that seed 002's ``authenticateDevice`` middleware guarded (its 401 bodies)."""


@dataclass(frozen=True)
class RouteAuth:
    """How one seed route authenticates while its seed's profile is on."""

    seed: str
    method: str
    path: str
    modes: tuple[str, ...]
    seed_errors: bool
    """Answer 401 with seed 002's ``{"error": ...}`` bodies."""

    @property
    def anonymous(self) -> bool:
        return NONE in self.modes

    @property
    def jwt(self) -> bool:
        return JWT in self.modes


def route_table(compat: CompatSettings) -> dict[tuple[str, str], RouteAuth]:
    """The seed routes of the profiles that are on, by (method, path template). JWTs are
    accepted only where seed 002 documents them and a secret is configured."""
    jwt_on = bool(compat.jwt_secret.get_secret_value())
    table = {}
    for seed in sorted(compat.profiles()):
        for method, path, extra in _SEED_ROUTES.get(seed, ()):
            modes = tuple(mode for mode in extra if mode != JWT or jwt_on) + CANONICAL
            table[method, path] = RouteAuth(seed, method, path, modes, path in _SEED_ERROR_ROUTES)
    return table


class SeedAuthError(ProblemError):
    """A refusal that a seed documents with its own body (seed 002's 401s). Without
    :func:`install_seed_error_handler` it falls back to the problem document."""

    def __init__(self, status: int, body: dict[str, Any], detail: str) -> None:
        super().__init__(
            status,
            "Unauthorized",
            detail,
            headers={"WWW-Authenticate": 'Bearer realm="fleetstream"'},
        )
        self.body = body


def install_seed_error_handler(app: FastAPI) -> None:
    @app.exception_handler(SeedAuthError)
    async def on_seed_error(_: Request, exc: SeedAuthError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


class DeviceRegistry(Protocol):
    """What the gate needs from the registry cache."""

    def get(self, record_id: str) -> Device | None: ...


@dataclass(frozen=True)
class AnonymousGate:
    """Admits the device ids of one request served without credentials."""

    cache: DeviceRegistry
    limiter: RateLimiter
    on_limited: Callable[[], None]
    client: str

    def admit(self, device_ids: Sequence[str]) -> None:
        """403 naming every id that is not a registered, enabled device (by index in a batch);
        then one token of each named device's rate limit (429 when one is empty)."""
        refused = [index for index, device_id in enumerate(device_ids) if not self.known(device_id)]
        if refused:
            log.info("request from %s without credentials refused: unknown ids", self.client)
            raise _not_registered(refused, batch=len(device_ids) > 1)
        for device_id in dict.fromkeys(device_ids):
            device = self.cache.get(device_id)
            wait_s = self.limiter.acquire(device_id, device.profile if device else None)
            if wait_s is not None:
                self.on_limited()
                raise ProblemError(
                    429,
                    "Too many requests",
                    f"device {device_id} is over its rate limit; retry after a pause",
                    headers={"Retry-After": retry_after_header(wait_s)},
                )

    def known(self, device_id: str) -> bool:
        device = self.cache.get(device_id)
        return device is not None and device.is_enabled


class TrustedCaller(Device, frozen=True, kw_only=True):
    """The caller of a ``none`` route: no device of its own. Its empty ``device_id`` matches
    no device, so code that compares ids refuses it; :func:`api.auth.require_device` and
    :func:`api.edge.require_own_readings` ask its :attr:`gate` instead."""

    gate: AnonymousGate


def idempotency_scope(device_ids: Sequence[str]) -> str:
    """The Idempotency-Key scope of a request without credentials: its devices, so that one
    device's key never answers for another's readings."""
    unique = sorted(set(device_ids))
    if len(unique) == 1:
        return unique[0]
    return "devices:" + hashlib.sha256("\x00".join(unique).encode()).hexdigest()[:32]


class InvalidToken(Exception):
    """A JWT that does not verify, or names no device."""


class CompatAuth:
    """The seed routes' auth modes of one API process (``app.state.compat_auth``)."""

    def __init__(
        self,
        compat: CompatSettings,
        limiter: RateLimiter,
        on_limited: Callable[[], None],
        clock: Clock = utc_now,
    ) -> None:
        self.routes = route_table(compat)
        self._networks = compat.networks()
        self._secret = compat.jwt_secret.get_secret_value()
        self._limiter = limiter
        self._on_limited = on_limited
        self._clock = clock

    def route(self, request: Request) -> RouteAuth | None:
        """The seed route being served, if its profile is on."""
        path = getattr(request.scope.get("route"), "path", None)
        return self.routes.get((request.method, path)) if path else None

    def trusted(self, host: str | None) -> bool:
        """Whether ``host`` (the TCP peer) is in a trusted network."""
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def trusted_caller(self, cache: DeviceRegistry, client: str) -> TrustedCaller:
        """The caller of a ``none`` route without credentials, from ``client`` (trusted)."""
        gate = AnonymousGate(cache, self._limiter, self._on_limited, client)
        return TrustedCaller(
            device_id="", token_hash="", created_at=_EPOCH, updated_at=_EPOCH, gate=gate
        )

    def jwt_device_id(self, token: str) -> str:
        """The ``device_id`` claim of a JWT signed with the secret (HS256 only); ``exp`` and
        ``nbf``, when present, are checked against this process's clock."""
        if not self._secret:
            raise InvalidToken("no JWT secret is configured")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        self._check_times(claims)
        device_id = claims.get(JWT_DEVICE_CLAIM)
        if not isinstance(device_id, str) or not device_id:
            raise InvalidToken(f"no {JWT_DEVICE_CLAIM} claim")
        return device_id

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock().timestamp()
        exp, nbf = _instant(claims, "exp"), _instant(claims, "nbf")
        if exp is not None and now >= exp:
            raise InvalidToken("expired")
        if nbf is not None and now < nbf:
            raise InvalidToken("not yet valid")

    def publish(self, registry: CollectorRegistry) -> None:
        """Log one line per seed route and mode, and show them as
        ``fleet_compat_route_auth{route, mode}`` = 1."""
        gauge = Gauge(
            "fleet_compat_route_auth",
            "Auth modes of the seed routes whose compatibility profile is on",
            ["route", "mode"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        if not self.routes:
            log.info("compat: no seed profile is on; seed routes take the device token only")
        for route in self.routes.values():
            for mode in route.modes:
                gauge.labels(route.path, mode).set(1)
                log.info(
                    "compat: seed %s route %s %s accepts auth mode %s",
                    route.seed,
                    route.method,
                    route.path,
                    mode,
                )
        if any(route.anonymous for route in self.routes.values()):
            networks = ", ".join(str(network) for network in self._networks)
            log.warning(
                "compat: routes with auth mode none serve requests without credentials from %s; "
                "anyone there can post as any registered device",
                networks or "no network (FLEET_COMPAT__TRUSTED_NETWORKS is empty)",
            )


def _not_registered(indexes: list[int], *, batch: bool) -> ProblemError:
    errors = [
        {
            **({"index": index} if batch else {}),
            "field": "device_id",
            "message": "not a registered, enabled device",
            "type": "unknown_device",
        }
        for index in indexes
    ]
    return ProblemError(
        403,
        "Forbidden",
        "without credentials, only registered and enabled devices may be named",
        errors=errors,
    )


def _instant(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim, ``None`` when absent; anything else than a number is refused."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} is not a NumericDate")
    return float(value)

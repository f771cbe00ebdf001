"""Who is calling: the operator (admin token) or a device (its own token).

Admin requests carry ``Authorization: Bearer <FLEET_AUTH__ADMIN_TOKEN>``. Devices send their
token in ``X-API-Key`` (seeds 000, 002) or ``Authorization: Bearer`` (seed 004). Device tokens
are checked against the process's :class:`~connectors.kafka.device_cache.DeviceCache`, never the
database, so a request costs a hash and a dict look-up.

Answers, all ``application/problem+json``:

* **401** no credentials, an unknown token, or the token of a disabled device;
* **403** a valid token writing for another device_id (:func:`require_device`);
* **503** + ``Retry-After`` while the cache has not yet read the registry topic to its end: the
  device may exist in a part not read yet, so "unknown" would be a lie.

Under a seed's compatibility profile its routes take the seed's own scheme as well
(:mod:`api.compat_auth`): no credentials from a trusted network, a JWT, and seed 002's own 401
bodies.

Tokens are never logged; failures are logged with the reason only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated, Protocol, cast

from fastapi import Depends, Request

from api.compat_auth import (
    CompatAuth,
    InvalidToken,
    RouteAuth,
    SeedAuthError,
    TrustedCaller,
    idempotency_scope,
)
from api.problems import ProblemError
from schemas.devices import Device
from schemas.settings import Settings

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"


class DeviceLookup(Protocol):
    """What authentication needs from the registry cache."""

    @property
    def caught_up(self) -> bool: ...

    def identify(self, token: str) -> Device | None: ...

    def get(self, record_id: str) -> Device | None: ...


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def device_token(request: Request) -> str | None:
    """The token a device presented: ``X-API-Key`` first, else ``Authorization: Bearer``."""
    return request.headers.get(API_KEY_HEADER) or bearer_token(request)


def is_admin_token(token: str, settings: Settings) -> bool:
    """Constant-time comparison (of digests, so the length leaks nothing either)."""
    expected = settings.auth.admin_token.get_secret_value()
    if not expected:
        return False
    return hmac.compare_digest(_digest(token), _digest(expected))


async def require_admin(request: Request) -> None:
    """Dependency of every admin route: 401 unless the admin bearer token is presented."""
    token = bearer_token(request)
    if token is None or not is_admin_token(token, _settings(request)):
        log.info("admin request refused on %s", request.url.path)
        raise _unauthorized(
            "send the admin token as Authorization: Bearer <token>", realm="fleetstream-admin"
        )


async def device_principal(request: Request) -> Device | None:
    """The device whose token the request carries; ``None`` for an unauthenticated request
    when ``FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST`` allows it (credentials that are sent are
    still checked)."""
    return _principal(request, allow_anonymous=_settings(request).auth.allow_unauthenticated_ingest)


def require_device(principal: Device | None, device_id: str) -> None:
    """403 when an authenticated device writes for another device_id (without credentials on
    a seed route: when ``device_id`` is not a registered, enabled device; 429 over its limit)."""
    if isinstance(principal, TrustedCaller):
        principal.gate.admit([device_id])
        return
    if principal is not None and principal.device_id != device_id:
        log.info("device %s refused: wrote for %s", principal.device_id, device_id)
        raise ProblemError(
            403,
            "Forbidden",
            "a device may only write its own device_id",
            errors=[
                {
                    "field": "device_id",
                    "message": "does not match the device of the credentials",
                    "type": "forbidden",
                }
            ],
        )


def owns(principal: Device, device_id: str) -> bool:
    """Whether ``principal`` may see what ``device_id`` stored (a caller without credentials
    on a seed route: when it is a registered, enabled device, charged to its rate limit)."""
    if isinstance(principal, TrustedCaller):
        if not principal.gate.known(device_id):
            return False
        principal.gate.admit([device_id])
        return True
    return principal.device_id == device_id


def principal_scope(principal: Device | None, device_ids: list[str]) -> str | None:
    """Whose Idempotency-Keys a request uses: the credentials' device, else the devices it
    names when it came without credentials on a seed route; ``None`` for development's
    unauthenticated ingest."""
    if isinstance(principal, TrustedCaller):
        return idempotency_scope(device_ids)
    return None if principal is None else principal.device_id


async def authenticate_device(request: Request, device_id: str) -> Device | None:
    """:func:`device_principal` and :func:`require_device` in one call, for one device_id."""
    principal = await device_principal(request)
    require_device(principal, device_id)
    return principal


def authenticated_device(request: Request) -> Device:
    """Like :func:`device_principal`, but credentials are always required."""
    principal = _principal(request, allow_anonymous=False)
    if principal is None:  # pragma: no cover - allow_anonymous=False never returns None
        raise _unauthorized("send the device token")
    return principal


def _principal(request: Request, *, allow_anonymous: bool) -> Device | None:
    compat = _compat(request)
    route = compat.route(request) if compat is not None else None
    api_key = request.headers.get(API_KEY_HEADER) or None
    bearer = bearer_token(request)
    token = api_key or bearer
    if token is None:
        if compat is not None and route is not None and route.anonymous:
            caller = _trusted_caller(request, compat)
            if caller is not None:
                return caller
        if allow_anonymous:
            return None
        raise _missing(request, route)
    cache = _caught_up_cache(request)
    device = cache.identify(token)
    if device is None and api_key is None and route is not None and route.jwt and compat:
        device = _jwt_device(compat, cache, token)
    if device is None:
        log.info("device request refused: unknown token")
        raise _invalid(
            route, via_api_key=api_key is not None, detail="the device token is not valid"
        )
    if not device.is_enabled:
        log.info("device request refused: %s is disabled", device.device_id)
        raise _invalid(
            route, via_api_key=api_key is not None, detail=f"device {device.device_id} is disabled"
        )
    return device


def _caught_up_cache(request: Request) -> DeviceLookup:
    cache = cast(DeviceLookup, request.app.state.device_cache)
    if not cache.caught_up:
        retry_after = str(_settings(request).api.retry_after_s)
        raise ProblemError(
            503,
            "Service unavailable",
            "this instance is still loading the device registry; retry shortly",
            headers={"Retry-After": retry_after},
        )
    return cache


def _trusted_caller(request: Request, compat: CompatAuth) -> TrustedCaller | None:
    """The caller of a ``none`` route without credentials, when its TCP peer is trusted."""
    host = request.client.host if request.client is not None else None
    if not compat.trusted(host):
        log.info("request without credentials from %s refused: not a trusted network", host)
        return None
    return compat.trusted_caller(_caught_up_cache(request), host or "")


def _jwt_device(compat: CompatAuth, cache: DeviceLookup, token: str) -> Device:
    try:
        device_id = compat.jwt_device_id(token)
    except InvalidToken as exc:
        log.info("device request refused: JWT not valid (%s)", exc)
        raise _seed_error("Invalid token", "the JWT is not valid") from None
    device = cache.get(device_id)
    if device is None or not device.is_enabled:
        log.info(
            "device request refused: JWT names %s, not a registered, enabled device", device_id
        )
        raise _seed_error("Invalid token", "the JWT names no registered, enabled device")
    return device


def _missing(request: Request, route: RouteAuth | None) -> ProblemError:
    """401 for a request without a device token. Seed 002's JWT middleware takes the second
    word of ``Authorization`` whatever the scheme: none is "No token provided", another
    scheme's is an "Invalid token"."""
    if route is not None and route.seed_errors:
        if route.jwt and "authorization" in request.headers:
            if len(request.headers["authorization"].split()) > 1:
                return _seed_error("Invalid token", "send the JWT as Authorization: Bearer")
            return _seed_error("No token provided", "send the JWT as Authorization: Bearer")
        return _seed_error("Missing API key", "send the device token in X-API-Key")
    return _unauthorized("send the device token in X-API-Key or Authorization: Bearer")


def _invalid(route: RouteAuth | None, *, via_api_key: bool, detail: str) -> ProblemError:
    """401 for credentials that do not name an enabled device. Seed 002's middlewares read
    only their own header: a bearer token is "Invalid token" where JWTs are on, and unseen
    ("Missing API key") where they are not."""
    if route is None or not route.seed_errors:
        return _unauthorized(detail)
    if via_api_key:
        return _seed_error("Invalid API key", detail)
    return _seed_error("Invalid token" if route.jwt else "Missing API key", detail)


def _seed_error(error: str, detail: str) -> SeedAuthError:
    return SeedAuthError(401, {"error": error}, detail)


def _compat(request: Request) -> CompatAuth | None:
    return cast(CompatAuth | None, getattr(request.app.state, "compat_auth", None))


def _unauthorized(detail: str, realm: str = "fleetstream") -> ProblemError:
    return ProblemError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'}
    )


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


AdminDep = Annotated[None, Depends(require_admin)]
DeviceAuthDep = Annotated[Device | None, Depends(device_principal)]
"""The calling device (``None`` only when unauthenticated ingest is allowed); pair it with
:func:`require_device` for every device_id the request writes."""

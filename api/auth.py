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

Tokens are never logged; failures are logged with the reason only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated, Protocol, cast

from fastapi import Depends, Request

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


def require_admin(request: Request) -> None:
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
    """403 when an authenticated device writes for another device_id."""
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
    token = device_token(request)
    if token is None:
        if allow_anonymous:
            return None
        raise _unauthorized("send the device token in X-API-Key or Authorization: Bearer")
    cache = cast(DeviceLookup, request.app.state.device_cache)
    if not cache.caught_up:
        retry_after = str(_settings(request).api.retry_after_s)
        raise ProblemError(
            503,
            "Service unavailable",
            "this instance is still loading the device registry; retry shortly",
            headers={"Retry-After": retry_after},
        )
    device = cache.identify(token)
    if device is None:
        log.info("device request refused: unknown token")
        raise _unauthorized("the device token is not valid")
    if not device.is_enabled:
        log.info("device request refused: %s is disabled", device.device_id)
        raise _unauthorized(f"device {device.device_id} is disabled")
    return device


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

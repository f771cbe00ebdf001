"""``GET /api/v1/devices/{device_id}/status``: what the status agent last knew, from Redis.

Answers the admin token, or the device's own token (another device's token: 403). The body is
``{"device_id", "online", "last_seen", "last_event_id", "last_values", "seq", "changed_at"}``;
a registered device that never sent a reading is offline with ``last_seen`` null. 404 for a
device the registry does not know; 503 while Redis cannot be read or the registry copy is still
loading.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import APIRouter, Request
from redis.exceptions import RedisError

from api.auth import authenticated_device, bearer_token, is_admin_token, require_device
from api.problems import ProblemError
from connectors.redis.status import StatusReader
from schemas.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["devices"])


@router.get("/api/v1/devices/{device_id}/status")
async def device_status(request: Request, device_id: str) -> dict[str, Any]:
    """Online flag, last seen time and last value per sensor field of one device."""
    settings = cast(Settings, request.app.state.settings)
    token = bearer_token(request)
    if token is None or not is_admin_token(token, settings):
        require_device(authenticated_device(request), device_id)
    cache = request.app.state.device_cache
    if not cache.caught_up:
        raise _unavailable(settings, "this instance is still loading the device registry")
    if cache.get(device_id) is None:
        raise ProblemError(404, "Not found", f"device {device_id} is not registered")
    reader = cast(StatusReader, request.app.state.status_reader)
    try:
        view = await reader.read(device_id)
    except (RedisError, OSError) as exc:
        log.warning("device status: Redis unavailable: %r", exc)
        raise _unavailable(settings, "the status store (Redis) is unavailable") from exc
    return view.as_json()


def _unavailable(settings: Settings, detail: str) -> ProblemError:
    return ProblemError(
        503, "Service unavailable", detail, headers={"Retry-After": str(settings.api.retry_after_s)}
    )

"""The operator views' actions go through the admin API: one implementation of each change
(the registries behind ``/api/v1/admin/...``: Postgres first, then the compacted topic, the MQTT
broker's credentials), never a second copy in the worker.

The worker calls the API at ``FLEET_WORKER__ADMIN_API_URL`` (a URL from settings, never one a
group member advertises) with the admin token, and hands the answer back as it came: status
and JSON body (problem+json for errors). An API that cannot be reached is 503.

| view action | admin API call |
| --- | --- |
| enable/disable a device | ``PATCH /api/v1/admin/devices/{id}`` ``{"is_enabled"}`` |
| rotate a device's token | ``POST /api/v1/admin/devices/{id}/rotate-token`` (holds the token) |
| list flows of the registry | ``GET /api/v1/admin/flows`` (enabled or not) |
| enable/disable a flow | ``PATCH /api/v1/admin/flows/{id}`` ``{"enabled"}`` |
| dry-run a flow | ``POST /api/v1/admin/flows/{id}/dry-run`` ``{"reading", "version"?}`` |
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from schemas.settings import Settings

TIMEOUT_S = 30.0
"""A dry run may take the API's own dry-run timeout; the rest answers in well under a second."""
DEVICES = "/api/v1/admin/devices"
FLOWS = "/api/v1/admin/flows"


class AdminApiUnreachable(Exception):
    """The admin API did not answer; the message says where and why."""


def admin_api_url(settings: Settings) -> str:
    return (settings.worker.admin_api_url or f"http://127.0.0.1:{settings.api.port}").rstrip("/")


class AdminApi:
    def __init__(self, settings: Settings) -> None:
        self.url = admin_api_url(settings)
        self._token = settings.auth.admin_token.get_secret_value()
        self._http: aiohttp.ClientSession | None = None

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: str
    ) -> tuple[int, Any]:
        """The API's status and decoded JSON body (``None`` for an empty one)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            async with self._http.request(
                method, f"{self.url}{path}", json=body, params=params, headers=headers
            ) as answer:
                text = await answer.text()
                decoded = None if not text else await answer.json(content_type=None)
                return answer.status, decoded
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminApiUnreachable(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    async def set_device_enabled(self, device_id: str, enabled: bool) -> tuple[int, Any]:
        return await self.call("PATCH", f"{DEVICES}/{quote(device_id)}", {"is_enabled": enabled})

    async def rotate_token(self, device_id: str) -> tuple[int, Any]:
        return await self.call("POST", f"{DEVICES}/{quote(device_id)}/rotate-token")

    async def flows(self) -> tuple[int, Any]:
        return await self.call("GET", FLOWS, limit="1000")

    async def set_flow_enabled(self, flow_id: str, enabled: bool) -> tuple[int, Any]:
        return await self.call("PATCH", f"{FLOWS}/{quote(flow_id)}", {"enabled": enabled})

    async def dry_run(self, flow_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self.call("POST", f"{FLOWS}/{quote(flow_id)}/dry-run", body)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

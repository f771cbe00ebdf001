"""Registered devices for integration tests: enrolled through the admin API, posting with their
own tokens (ingest needs device credentials)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from schemas.settings import DEV_ADMIN_TOKEN
from tests.support import wait_until

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
ADMIN_DEVICES = "/api/v1/admin/devices"


class Fleet:
    """Devices of one test, on one API (in-process or served)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tokens: dict[str, str] = {}

    async def enroll(self, device_ids: Iterable[str], **fields: Any) -> None:
        """Register the devices, then wait until the API's device cache knows their tokens."""
        for device_id in device_ids:
            response = await self.client.post(
                ADMIN_DEVICES, json={"device_id": device_id, **fields}, headers=ADMIN
            )
            assert response.status_code == 201, response.text
            self.tokens[device_id] = response.json()["token"]

        async def all_known() -> bool:
            probes = [self._known(device_id) for device_id in self.tokens]
            return all(await asyncio.gather(*probes))

        await wait_until(all_known, timeout_s=15, what="the device cache to learn the tokens")

    async def _known(self, device_id: str) -> bool:
        # A read-only request that needs the device's credentials.
        response = await self.client.get(
            f"/api/v1/sensors/{device_id}/latest", headers=self.headers(device_id)
        )
        return response.status_code == 200

    def headers(self, device_id: str) -> dict[str, str]:
        return {"X-API-Key": self.tokens[device_id]}

    async def post(
        self, body: dict[str, Any] | Sequence[dict[str, Any]], path: str = "/v1/readings", **kw: Any
    ) -> httpx.Response:
        """Post a reading or a batch with its device's token. A batch of several devices goes
        as one request per device (a token writes only its own device), concurrently; the
        answer is then one 202 listing every event id in the order of ``body``, or the first
        failure."""
        headers = kw.pop("headers", {})
        if isinstance(body, dict):
            device_id = body["device_id"]
            return await self.client.post(
                path, json=body, headers={**self.headers(device_id), **headers}, **kw
            )
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(body):
            groups.setdefault(item["device_id"], []).append(index)
        if len(groups) == 1:
            (device_id,) = groups
            return await self.client.post(
                path, json=list(body), headers={**self.headers(device_id), **headers}, **kw
            )
        answers = await asyncio.gather(
            *(
                self.client.post(
                    path,
                    json=[body[i] for i in indexes],
                    headers={**self.headers(device_id), **headers},
                    **kw,
                )
                for device_id, indexes in groups.items()
            )
        )
        failed = [answer for answer in answers if answer.status_code != 202]
        if failed:
            return failed[0]
        event_ids: list[str] = [""] * len(body)
        for (_, indexes), answer in zip(groups.items(), answers, strict=True):
            for index, event_id in zip(indexes, answer.json()["event_ids"], strict=True):
                event_ids[index] = event_id
        return httpx.Response(202, json={"accepted": len(event_ids), "event_ids": event_ids})

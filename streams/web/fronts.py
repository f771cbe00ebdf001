"""The MQTT fronts as the operator views show them: each front's ``/health``, asked in turn.

The fronts are separate processes (``fleetstream mqtt-front``), not members of the worker's
consumer group, so their health URLs come from ``FLEET_MQTT_FRONT__URLS``. Nothing secret is
sent: a front's health and metrics are open, like the API's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

ASK_TIMEOUT_S = 2.0


async def front_rows(session: aiohttp.ClientSession, urls: list[str]) -> list[dict[str, Any]]:
    """One row per URL, in the order given: the front's own answer, or why there is none."""
    return list(await asyncio.gather(*(_ask(session, url) for url in urls)))


async def _ask(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)
    try:
        async with session.get(f"{url}/health", timeout=timeout) as answer:
            body = await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"url": url, "status": "unreachable", "error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(body, dict) or "status" not in body:
        return {"url": url, "status": "unreachable", "error": "not a front's health answer"}
    return {"url": url, **body}

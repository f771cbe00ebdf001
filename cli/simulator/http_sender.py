"""Readings over HTTP: one per request (``POST /api/v1/sensor-data``, as the seeds' ESP32
firmware posts) or a JSON array per request (``POST /v1/readings``).

A 2xx means Kafka holds every reading of the request. 429 and 503, a timeout or a broken
connection are retried with the same body (the same event ids, so a reading the server did take
is stored once), after ``Retry-After`` (at most :data:`MAX_RETRY_AFTER_S`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cli.simulator.http_client import Answer, HttpBroken, HttpPool, HttpTimeout
from cli.simulator.payloads import json_array
from cli.simulator.tally import Acked, Tally

SINGLE_ROUTE = "/api/v1/sensor-data"
BATCH_ROUTE = "/v1/readings"
MAX_RETRY_AFTER_S = 5.0
_RETRIED = frozenset({429, 503})


@dataclass(frozen=True)
class Outgoing:
    device_id: str
    event_id: str
    body: bytes
    bad: bool


class HttpSender:
    def __init__(
        self,
        pool: HttpPool,
        tally: Tally,
        *,
        retries: int,
    ) -> None:
        self._pool, self._tally, self._retries = pool, tally, retries

    async def send(self, token: str, items: Sequence[Outgoing], *, batch: bool) -> None:
        """Post ``items`` (one request) until acked, refused for good, or out of retries."""
        route, body = (BATCH_ROUTE, json_array([i.body for i in items])) if batch else (
            SINGLE_ROUTE, items[0].body)  # fmt: skip
        bad = sum(item.bad for item in items)
        self._tally.sending(len(items), bad)
        headers = {"X-API-Key": token, "Content-Type": "application/json"}
        for attempt in range(self._retries + 1):
            answer, status, wait_s = await self._post(route, body, headers)
            if answer is not None:
                acked = [Acked(i.device_id, i.event_id, answer.sent_at, answer.seconds)
                         for i in items]  # fmt: skip
                self._tally.ack(acked, bad)
                return
            self._tally.error(status, len(items))
            if wait_s is None or attempt == self._retries:
                break
            await asyncio.sleep(wait_s)
        self._tally.fail(len(items))

    async def _post(
        self, route: str, body: bytes, headers: dict[str, str]
    ) -> tuple[Answer | None, str, float | None]:
        """(the answer, "", None) on 2xx, else (None, the error's status, seconds to wait before
        a retry or None when a retry would not help)."""
        try:
            answer = await self._pool.post(route, body, headers)
        except HttpTimeout:
            return None, "timeout", 1.0
        except HttpBroken:
            return None, "transport", 1.0
        if 200 <= answer.status < 300:
            return answer, "", None
        if answer.status not in _RETRIED:
            return None, f"http {answer.status}", None
        return None, f"http {answer.status}", retry_after(answer.headers.get("retry-after"))


def retry_after(value: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds form), capped."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)

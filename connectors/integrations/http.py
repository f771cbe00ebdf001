"""HTTP integration calls of flows (httpx): one attempt per :meth:`HttpSender.send`.

Every request carries ``Idempotency-Key: <call_id>`` (stable per flow version, node and
reading), so a receiver can drop the repeats that at-least-once delivery makes after a retry or
a worker crash. Redirects are not followed.
"""

from __future__ import annotations

import httpx

from connectors.integrations.errors import CallFailed
from schemas.flows import Outbound

_RETRIABLE_STATUS = frozenset({408, 425, 429})


class HttpSender:
    def __init__(self, client: httpx.AsyncClient | None = None, *, max_connections: int = 32):
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def send(self, call: Outbound) -> None:
        """One attempt; raises :class:`CallFailed` unless the answer is 2xx."""
        headers = {
            "content-type": "application/json",
            "idempotency-key": call.call_id,
            "user-agent": "fleetstream-flows",
            **call.headers,
        }
        content = None if call.method == "GET" else call.body
        try:
            response = await self._client.request(
                call.method, call.target, content=content, headers=headers, timeout=call.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise CallFailed(f"timed out after {call.timeout_s}s", retriable=True) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise CallFailed(f"invalid URL {call.target!r}: {exc}", retriable=False) from exc
        except httpx.HTTPError as exc:
            raise CallFailed(f"{type(exc).__name__}: {exc}", retriable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retriable = status >= 500 or status in _RETRIABLE_STATUS
        raise CallFailed(f"HTTP {status} from {call.target}", retriable=retriable)

    async def close(self) -> None:
        await self._client.aclose()

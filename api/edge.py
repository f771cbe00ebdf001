"""The one ingest path every HTTP route shares, after it has turned its body into readings.

``/v1/readings`` and the seed routes (:mod:`api.routes.seeds`) differ only in how they read a
body; from there on they all: refuse a reading of another device (403, naming its index), refuse
a reading too large for a Kafka record (413), check the ``Idempotency-Key`` against Redis
(a key reused with another body → 422), hand the items to the envelope batcher and answer once
Kafka acked them (2xx), or 503/429 when it did not.

Rate limits come before any of that (:func:`ingest_request`), so a device over its limit costs
no body parsing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

import msgspec
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from api.auth import DeviceAuthDep, device_principal, principal_scope
from api.compat_auth import CompatAuth, TrustedCaller
from api.ingest import raw_items
from api.limits import RateLimiter, retry_after_header
from api.metrics import ApiMetrics
from api.problems import ProblemError
from connectors.kafka.batcher import EnvelopeBatcher
from connectors.redis.idempotency import Claim, IdempotencyStore, IdempotencyUnavailable
from schemas.catalogue import GenericLimits
from schemas.clock import Clock, utc_now
from schemas.devices import Device
from schemas.events import Source
from schemas.readings import Reading
from schemas.settings import Settings

ANONYMOUS = "-"
"""Idempotency scope of development's unauthenticated requests."""


@dataclass(frozen=True)
class Window:
    """The edge's timestamp window and generic-field bounds, as the validator takes them."""

    now: datetime
    max_future: timedelta
    max_age: timedelta
    limits: GenericLimits


class Edge:
    """What the ingest routes share; one per app (``app.state.edge``)."""

    def __init__(
        self, settings: Settings, state: Any, metrics: ApiMetrics, clock: Clock = utc_now
    ) -> None:
        """``state`` is the app's ``app.state``: the lifespan puts the batcher (``batcher``)
        and the Redis idempotency store (``idempotency``, optional) there."""
        api = settings.api
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.limiter = RateLimiter(api.rate_limit, api.rate_limit_profiles)
        self.compat = CompatAuth(settings.compat, self.limiter, metrics.rate_limited.inc, clock)
        self.compat.publish(metrics.registry)
        state.compat_auth = self.compat  # read by api.auth on every device request
        self._state = state
        self._max_item_bytes = settings.kafka.envelope_max_bytes
        self._limits = settings.generic.limits()

    @property
    def batcher(self) -> EnvelopeBatcher:
        return cast(EnvelopeBatcher, self._state.batcher)

    @property
    def idempotency(self) -> IdempotencyStore | None:
        return cast(IdempotencyStore | None, getattr(self._state, "idempotency", None))

    def window(self) -> Window:
        api = self.settings.api
        return Window(
            now=self.clock(),
            max_future=timedelta(seconds=api.timestamp_max_ahead_s),
            max_age=timedelta(seconds=api.timestamp_max_age_s),
            limits=self._limits,
        )

    async def accept(
        self,
        items: Sequence[tuple[Reading, msgspec.Raw]],
        *,
        principal: Device | None,
        received_at: datetime,
        idempotency_key: str | None,
        route: str,
        source: Source = "http",
    ) -> list[str]:
        """Produce validated ``items``; return their event ids once Kafka acked all of them."""
        require_own_readings(principal, [reading.device_id for reading, _ in items])
        event_ids, encoded = raw_items(
            items, received_at=received_at, source=source, idempotency_key=idempotency_key
        )
        self._check_sizes(encoded)
        if idempotency_key:
            await self._claim(principal, idempotency_key, items)
        await self.batcher.submit(encoded)
        self.metrics.readings.labels(route).inc(len(encoded))
        return event_ids

    def _check_sizes(self, encoded: Sequence[tuple[str, bytes]]) -> None:
        for index, (_, item) in enumerate(encoded):
            if len(item) > self._max_item_bytes:
                raise ProblemError(
                    413,
                    "Reading too large",
                    f"item {index} is {len(item)} bytes encoded; one reading may have at most "
                    f"{self._max_item_bytes}",
                    errors=[
                        {"index": index, "field": None, "message": "too large", "type": "size"}
                    ],
                )

    async def _claim(
        self,
        principal: Device | None,
        key: str,
        items: Sequence[tuple[Reading, msgspec.Raw]],
    ) -> None:
        if self.idempotency is None:
            return
        scope = principal_scope(principal, [reading.device_id for reading, _ in items])
        scope = ANONYMOUS if scope is None else scope
        try:
            claim = await self.idempotency.claim(scope, key, body_digest(items))
        except IdempotencyUnavailable as exc:
            raise ProblemError(
                503,
                "Service unavailable",
                "the Idempotency-Key cannot be checked right now; retry shortly",
                headers={"Retry-After": str(self.settings.api.retry_after_s)},
            ) from exc
        if claim is Claim.CONFLICT:
            raise ProblemError(
                422,
                "Idempotency-Key reused",
                "this Idempotency-Key was used with a different body; use a new key for new data",
                errors=[
                    {
                        "field": "Idempotency-Key",
                        "message": "already used with a different body",
                        "type": "idempotency_conflict",
                    }
                ],
            )


def body_digest(items: Sequence[tuple[Reading, msgspec.Raw]]) -> str:
    """What makes two requests "the same" for an Idempotency-Key: the device and the exact
    JSON of every reading, in order (not the body's framing: an array or NDJSON of the same
    readings is the same request, and it maps onto the same event ids)."""
    digest = hashlib.sha256()
    for reading, payload in items:
        raw = bytes(payload)
        digest.update(f"{reading.device_id}\x00{len(raw)}\x00".encode())
        digest.update(raw)
    return digest.hexdigest()


def require_own_readings(principal: Device | None, device_ids: Sequence[str]) -> None:
    """403 naming every item written for another device than the credentials' (without
    credentials on a seed route: every item of a device not registered and enabled)."""
    if isinstance(principal, TrustedCaller):
        principal.gate.admit(device_ids)
        return
    if principal is None:
        return
    foreign = [
        index for index, device_id in enumerate(device_ids) if device_id != principal.device_id
    ]
    if not foreign:
        return
    batch = len(device_ids) > 1
    errors: list[dict[str, Any]] = [
        {
            **({"index": index} if batch else {}),
            "field": "device_id",
            "message": "does not match the device of the credentials",
            "type": "forbidden",
        }
        for index in foreign
    ]
    raise ProblemError(403, "Forbidden", "a device may only write its own device_id", errors=errors)


def edge_of(request: Request) -> Edge:
    return cast(Edge, request.app.state.edge)


async def get_edge(request: Request) -> Edge:
    return edge_of(request)


async def ingest_device(request: Request, principal: DeviceAuthDep) -> Device | None:
    """The authenticated device (``None`` when unauthenticated ingest is allowed), after its
    rate limit: 429 + ``Retry-After`` when its bucket is empty. A caller without credentials
    on a seed route is charged per device it names, once the body names them."""
    if principal is None or isinstance(principal, TrustedCaller):
        return principal
    edge = edge_of(request)
    wait_s = edge.limiter.acquire(principal.device_id, principal.profile)
    if wait_s is not None:
        edge.metrics.rate_limited.inc()
        raise ProblemError(
            429,
            "Too many requests",
            f"device {principal.device_id} is over its rate limit; retry after a pause",
            headers={"Retry-After": retry_after_header(wait_s)},
        )
    return principal


async def ingest_request(request: Request) -> tuple[Edge, Device | None, str | None]:
    """The edge, the calling device (after its rate limit) and the ``Idempotency-Key`` of an
    ingest request. Called by the ingest routes rather than declared as FastAPI dependencies
    and parameters: resolving those was a third of a one-reading request's CPU."""
    principal = await ingest_device(request, await device_principal(request))
    return edge_of(request), principal, idempotency_key_of(request)


IDEMPOTENCY_KEY_MAX = 200
IDEMPOTENCY_KEY_PARAMETER = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX, "title": "Idempotency-Key"},
    "description": "makes a retried request map onto the same events; reusing it with another "
    "body is refused (422)",
}
"""The header in the OpenAPI document of the routes that read it (``ingest_request``)."""


def idempotency_key_of(request: Request) -> str | None:
    """The ``Idempotency-Key`` header; one too long is the 422 FastAPI gives a parameter."""
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise RequestValidationError(
            [
                {
                    "loc": ("header", "idempotency-key"),
                    "msg": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
                    "type": "string_too_long",
                }
            ]
        )
    return key


EdgeDep = Annotated[Edge, Depends(get_edge)]
IngestDeviceDep = Annotated[Device | None, Depends(ingest_device)]

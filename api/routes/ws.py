"""``GET /ws``: the live feed (seed 002's WebSocket protocol); with seed 002's profile on, the
same feed on its own port too (:func:`seed002_server`, ``FLEET_COMPAT__WS_PORT``), where a
``sensor-data`` message carries the seed's ``EnrichedSensorReading`` (docs/compat.md).

Credentials, on the upgrade request: ``?token=<token>`` (browsers cannot set headers on a
WebSocket), or ``Authorization: Bearer <token>``, or ``X-API-Key: <token>``. The admin token and
``FLEET_LIVE__READ_TOKEN`` see every device; a device's own token sees that device only.

Client → server (text frames, JSON)::

    {"type": "subscribe", "device_ids": ["esp32-01"], "sensor_types": ["mq134"]}

Both filters are optional (absent or null: all); a new subscribe replaces the previous one.
Nothing is sent before the first subscribe. Server → client::

    {"type": "subscribed", "device_ids": [...] | null, "sensor_types": [...] | null}
    {"type": "sensor-data", "data": <curated reading, as on fleet.readings.v1>}
    {"type": "device-status", "data": <device status record>}
    {"type": "error", "message": "..."}            (a bad message; the connection stays)

Close codes: 4401 no or bad credentials; 4008 the client is too slow:
``FLEET_LIVE__CLIENT_QUEUE_MAX`` messages or ``FLEET_LIVE__CLIENT_QUEUE_MAX_CHARS`` characters
were still waiting for it when a reading came, or when one of its own messages needed an answer
(it is dropped so that nobody else waits and the server's memory stays bounded; the reason says
how far behind it was); 1013 the device registry is not loaded yet (retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Literal, cast

import msgspec
import uvicorn
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from api.auth import API_KEY_HEADER, DeviceLookup, is_admin_token
from api.compat_auth import CompatAuth
from api.live import LiveFeed, QueueLimits, Reshape, Subscriber
from api.metrics import ApiMetrics
from schemas.seed_payloads import seed002_live_reading
from schemas.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

UNAUTHORIZED = 4401
TOO_SLOW = 4008
TRY_AGAIN = 1013


class Subscribe(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["subscribe"]
    device_ids: list[str] | None = None
    sensor_types: list[str] | None = None


_subscribe = msgspec.json.Decoder(Subscribe)


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    """Stream processed readings (and device status) matching the client's subscription."""
    await serve_live(websocket, reshape=None)


async def seed002_live(websocket: WebSocket) -> None:
    """Seed 002's WebSocket (its own port, any path): the same feed, readings as the seed's
    ``EnrichedSensorReading`` (``timestamp``, ``device_metadata``). Like the seed routes' "none"
    mode, a client without credentials is served from ``FLEET_COMPAT__TRUSTED_NETWORKS``."""
    await serve_live(websocket, reshape=seed002_live_reading, anonymous_from_trusted=True)


async def serve_live(
    websocket: WebSocket, reshape: Reshape | None, *, anonymous_from_trusted: bool = False
) -> None:
    """One live client, from its credentials to its close; ``reshape``: its readings' shape."""
    settings = cast(Settings, websocket.app.state.settings)
    feed = cast(LiveFeed, websocket.app.state.live_feed)
    await websocket.accept()
    try:
        if anonymous_from_trusted and _token(websocket) is None and _trusted_peer(websocket):
            device = None  # every device, as the seed's feed served everyone who reached it
        else:
            device = _principal(websocket, settings)
    except Refused as refused:
        await websocket.close(refused.code, refused.reason)
        return
    limits = QueueLimits(settings.live.client_queue_max, settings.live.client_queue_max_chars)
    subscriber = Subscriber(limits, device=device, reshape=reshape)
    metrics = cast(ApiMetrics, websocket.app.state.metrics)
    feed.add(subscriber)
    metrics.live_clients.inc()
    tasks = [
        asyncio.create_task(_send(websocket, subscriber)),
        asyncio.create_task(_receive(websocket, subscriber, settings.live.max_filter_items)),
        asyncio.create_task(subscriber.overflowed.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.remove(subscriber)
        metrics.live_clients.dec()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if subscriber.overflowed.is_set():
        reason = too_slow_reason(subscriber)
        log.info("live client dropped: %s", reason)
        metrics.live_dropped.inc()
        # Not wrapped in a timeout: the server's own close timeout aborts the connection when
        # the client does not read even the close frame (cancelling close would leave it open).
        with contextlib.suppress(Exception):
            await websocket.close(TOO_SLOW, reason)


def too_slow_reason(subscriber: Subscriber) -> str:
    """The close reason of a client found behind (well under the 123 bytes a reason may take)."""
    messages, chars = subscriber.behind
    return f"too slow: {messages} messages ({chars} characters) behind"


def _principal(websocket: WebSocket, settings: Settings) -> str | None:
    """None: may watch every device; a device id: only that one. Raises Refused."""
    token = _token(websocket)
    if token is None:
        raise Refused(UNAUTHORIZED, "send a token: ?token=, Authorization: Bearer or X-API-Key")
    if is_admin_token(token, settings):
        return None
    read_token = settings.live.read_token.get_secret_value()
    if read_token and hmac.compare_digest(token.encode(), read_token.encode()):
        return None
    cache = cast(DeviceLookup, websocket.app.state.device_cache)
    if not cache.caught_up:
        raise Refused(TRY_AGAIN, "the device registry is still loading; retry shortly")
    found = cache.identify(token)
    if found is None or not found.is_enabled:
        raise Refused(UNAUTHORIZED, "the token is not valid")
    return found.device_id


def _trusted_peer(websocket: WebSocket) -> bool:
    """Whether the TCP peer is in a trusted network (seed profiles' "none" mode)."""
    compat = cast(CompatAuth | None, getattr(websocket.app.state, "compat_auth", None))
    if compat is None:
        return False
    return compat.trusted(websocket.client.host if websocket.client is not None else None)


def _token(websocket: WebSocket) -> str | None:
    query = websocket.query_params.get("token")
    if query:
        return query
    scheme, _, bearer = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and bearer.strip():
        return bearer.strip()
    return websocket.headers.get(API_KEY_HEADER) or None


async def _send(websocket: WebSocket, subscriber: Subscriber) -> None:
    while True:
        await websocket.send_text(await subscriber.next_message())


async def _receive(websocket: WebSocket, subscriber: Subscriber, max_items: int) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            text = await websocket.receive_text()
            subscriber.answer(_answer(subscriber, text, max_items))
            # A turn for the sender before the next message, which may be buffered already:
            # a client that sends a burst and reads the answers keeps up.
            await asyncio.sleep(0)


def _answer(subscriber: Subscriber, text: str, max_items: int) -> str:
    """Apply a client's message; the answer to send back."""
    try:
        _apply(subscriber, _subscribe.decode(text), max_items)
    except (msgspec.DecodeError, ValueError) as exc:
        return json.dumps({"type": "error", "message": str(exc)})
    answer = {
        "type": "subscribed",
        "device_ids": _listed(subscriber.device_ids),
        "sensor_types": _listed(subscriber.sensor_types),
    }
    return json.dumps(answer)


def _apply(subscriber: Subscriber, message: Subscribe, max_items: int) -> None:
    for name in ("device_ids", "sensor_types"):
        values = getattr(message, name)
        if values is not None and len(values) > max_items:
            raise ValueError(f"{name}: at most {max_items} items")
    own = subscriber.device
    if own is not None and message.device_ids is not None and set(message.device_ids) - {own}:
        raise ValueError(f"device_ids: a device token sees only its own device, {own}")
    subscriber.device_ids = None if message.device_ids is None else frozenset(message.device_ids)
    subscriber.sensor_types = (
        None if message.sensor_types is None else frozenset(message.sensor_types)
    )
    subscriber.active = True


def _listed(values: frozenset[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


# ---- seed 002's port ----------------------------------------------------------------------------

SERVER_START_S = 10.0


class _QuietServer(uvicorn.Server):
    """A server inside the API process: the API's own server keeps the signals (it stops this
    one from its lifespan)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def seed002_app(main: FastAPI) -> Starlette:
    """The app of seed 002's port: its WebSocket on every path (the seed connects to
    ``ws://host:3001``), sharing the API's state (settings, live feed, device cache, metrics)."""
    app = Starlette(routes=[WebSocketRoute("/{path:path}", seed002_live)])
    app.state = main.state
    return app


@contextlib.asynccontextmanager
async def seed002_server(main: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Serve seed 002's WebSocket on ``FLEET_COMPAT__WS_PORT`` while seed 002's profile is on
    (else nothing). Raises at start-up if the port cannot be bound."""
    if "002" not in settings.compat.profiles():
        yield
        return
    config = uvicorn.Config(
        seed002_app(main),
        host=settings.api.host,
        port=settings.compat.ws_port,
        lifespan="off",
        log_config=None,  # the API's logging is configured already
        access_log=False,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(_serve(server), name="seed002-websocket")
    try:
        await _started(server, task)
        log.info("seed 002 WebSocket on ws://%s:%d", settings.api.host, settings.compat.ws_port)
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn's answer to a port it cannot bind; not the process's exit
        log.error("seed 002's WebSocket server did not start (uvicorn logged why, above)")


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(SERVER_START_S):
        while not server.started:
            if task.done():  # uvicorn exits (SystemExit) when it cannot bind
                raise RuntimeError("seed 002's WebSocket port could not be served; see the log")
            await asyncio.sleep(0.05)

"""The live feed's per-client bound, without Kafka: records are fanned out with
:meth:`LiveFeed.dispatch` as the feed's dispatcher does (one record, then a turn for the
clients' senders), to the ``/ws`` route's own handler on stand-in WebSockets."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from fastapi import WebSocket

from api.live import LiveFeed, QueueLimits, Subscriber
from api.metrics import ApiMetrics
from api.routes import ws
from schemas.envelopes import curated_envelope
from schemas.settings import DEV_ADMIN_TOKEN, LiveSettings, Settings
from tests.support import wait_until

CURATED = "fleet.curated.v1"
STATUS = "fleet.device-status.v1"
SUBSCRIBE = json.dumps({"type": "subscribe"})


def record(device_id: str, first: int, count: int, padding: int = 0) -> tuple[str, None, bytes]:
    """A curated record of ``count`` readings of ``device_id`` (the feed reads only the device
    and the sensor names of each)."""
    items = [
        msgspec.json.encode(
            {
                "device_id": device_id,
                "n": first + n,
                "sensors": {"pir": {"motion_detected": True}},
                "note": "x" * padding,
            }
        )
        for n in range(count)
    ]
    return CURATED, None, curated_envelope(items)


def subscriber(messages: int, chars: int = 10**9) -> Subscriber:
    client = Subscriber(QueueLimits(messages, chars))
    client.active = True
    return client


async def drain(client: Subscriber) -> list[str]:
    return [await client.next_message() for _ in range(client.waiting[0])]


async def test_a_client_that_does_not_drain_is_cut_off_at_its_bound_plus_one_record() -> None:
    feed = LiveFeed("unused:9092", CURATED, STATUS)
    reading, stalled = subscriber(20), subscriber(20)
    feed.add(reading)
    feed.add(stalled)
    received = 0
    most_waiting = 0
    for n in range(100):
        feed.dispatch(record("dev-1", n * 5, 5))
        most_waiting = max(most_waiting, stalled.waiting[0])
        received += len(await drain(reading))
    assert received == 500  # the reading client missed nothing
    assert not reading.overflowed.is_set()
    assert stalled.overflowed.is_set()
    assert most_waiting <= 20 - 1 + 5  # below the bound when the last record came, plus it
    assert stalled.waiting == (0, 0)  # its memory goes back at once, before any close
    assert stalled.behind[0] >= 20


def test_large_messages_are_cut_off_by_characters_before_the_message_count() -> None:
    feed = LiveFeed("unused:9092", CURATED, STATUS)
    stalled = subscriber(1000, chars=10_000)
    feed.add(stalled)
    most_chars = 0
    for n in range(50):
        feed.dispatch(record("dev-1", n, 1, padding=3000))
        most_chars = max(most_chars, stalled.waiting[1])
    assert stalled.overflowed.is_set()
    assert most_chars < 10_000 + 3200  # the bound plus one record of one reading
    assert stalled.behind[0] < 10


def test_answers_to_the_clients_own_messages_count_against_its_bound() -> None:
    client = subscriber(5)
    for _ in range(1000):
        client.answer('{"type":"subscribed","device_ids":null,"sensor_types":null}')
        assert client.waiting[0] <= 5
    assert client.overflowed.is_set() and client.waiting == (0, 0)


class StandInSocket:
    """What the route uses of a Starlette WebSocket. A stalled client's sends never complete
    (its TCP window is shut); a reading client's do at once."""

    def __init__(self, app: Any, incoming: list[str], *, reads: bool) -> None:
        self.app = app
        self.query_params = {"token": DEV_ADMIN_TOKEN}
        self.client: Any = None  # the TCP peer (host, port), as Starlette has it
        self.headers: dict[str, str] = {}
        self.reads = reads
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._incoming: asyncio.Queue[str] = asyncio.Queue()
        for message in incoming:
            self._incoming.put_nowait(message)

    async def accept(self) -> None:
        return None

    async def send_text(self, text: str) -> None:
        if not self.reads:
            await asyncio.Event().wait()
        self.sent.append(json.loads(text))

    async def receive_text(self) -> str:
        return await self._incoming.get()

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)

    def readings(self) -> int:
        return sum(1 for message in self.sent if message["type"] == "sensor-data")


def serve(socket: StandInSocket) -> asyncio.Task[None]:
    """The ``/ws`` handler on ``socket``, running."""
    return asyncio.create_task(ws.live(cast(WebSocket, socket)))


def app_with(feed: LiveFeed, queue_max: int) -> Any:
    live = LiveSettings(client_queue_max=queue_max)
    state = SimpleNamespace(
        settings=Settings(live=live), live_feed=feed, metrics=ApiMetrics(), device_cache=None
    )
    return SimpleNamespace(state=state)


def dropped(app: Any) -> float:
    return float(app.state.metrics.live_dropped._value.get())


async def test_a_stalled_client_is_closed_with_4008_while_a_reading_client_keeps_receiving() -> (
    None
):
    feed = LiveFeed("unused:9092", CURATED, STATUS)
    app = app_with(feed, queue_max=20)
    reading = StandInSocket(app, [SUBSCRIBE], reads=True)
    stalled = StandInSocket(app, [SUBSCRIBE], reads=False)
    tasks = [serve(reading), serve(stalled)]

    async def both_subscribed() -> bool:
        return len(feed._subscribers) == 2 and all(s.active for s in feed._subscribers)

    await wait_until(both_subscribed, timeout_s=5, what="two subscribed clients", poll_s=0.01)
    for n in range(60):
        feed.dispatch(record("dev-1", n * 5, 5))
        await asyncio.sleep(0)  # the feed's dispatcher yields to the senders between records
    await asyncio.wait_for(tasks[1], 5)  # the stalled client's handler ends...
    assert stalled.closed is not None
    code, reason = stalled.closed
    assert code == ws.TOO_SLOW == 4008
    assert reason.startswith("too slow: ") and "messages" in reason and "behind" in reason
    assert len(reason.encode()) <= 123  # what a close frame can carry
    assert reading.readings() == 300 and reading.closed is None  # ...the other one is not
    assert not tasks[0].done()
    assert len(feed._subscribers) == 1 and dropped(app) == 1.0
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)


@pytest.mark.parametrize("reads", [False, True])
async def test_a_client_that_sends_without_reading_the_answers_is_closed(reads: bool) -> None:
    """A subscribe (or a bad message) is answered through the same bounded queue: a client
    that keeps sending and never reads cannot make the server hold its answers unbounded."""
    feed = LiveFeed("unused:9092", CURATED, STATUS)
    app = app_with(feed, queue_max=10)
    messages = [SUBSCRIBE if n % 2 else "not json" for n in range(500)]
    client = StandInSocket(app, messages, reads=reads)
    task = serve(client)
    if reads:

        async def all_answered() -> bool:
            return len(client.sent) == 500

        await wait_until(all_answered, timeout_s=5, what="500 answers", poll_s=0.01)
        assert client.closed is None and dropped(app) == 0.0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return
    await asyncio.wait_for(task, 5)
    assert client.closed is not None and client.closed[0] == 4008
    assert client.closed[1].startswith("too slow: 10 messages")
    assert dropped(app) == 1.0 and not feed._subscribers

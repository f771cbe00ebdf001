"""The one place that uses private Faust APIs (faust-streaming pinned to 0.15.3).

A Table write needs "the current event": Faust sends the changelog record to that event's
partition. Inside ``noack_take`` there is none (Faust sets it per message in ``async for``), so
``table[key] = value`` raises "Cannot modify table key from outside of stream iteration"; the
agent would crash-loop. Agents that write tables per batch set the event whose partition holds
the key (envelopes are partition-aligned, so any event of that partition will do) with
:func:`writing_as`. If a Faust upgrade changes the private name,
``tests/unit/streams/test_faust_compat.py`` fails first.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust import streams as _faust_streams
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_current_event = _faust_streams._current_event


@contextmanager
def writing_as(event: Any) -> Iterator[None]:
    """Table writes inside the block go to ``event``'s partition of the changelog."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def buffer_changelog_writes(app: faust.App, max_messages: int) -> None:
    """Let up to ``max_messages`` table changelog records wait in Faust's producer buffer.

    Faust's bound is a class attribute of 100 (no setting). Past it, the conductor stops
    delivering *every* topic's messages to *every* agent until the buffer is under the bound
    again, and a batch that writes a row per device passes 100 at once. The flow-state table
    writes through this buffer (status and rollups write their changelogs themselves,
    ``agents.changelog``). It drains in the background and Faust flushes it before every
    offset commit, so a larger bound costs no durability; it still caps the buffer's memory.
    """
    app.producer.buffer.max_messages = max_messages


_FETCH_MAX_WAIT_MS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def limit_fetch_wait(app: faust.App, max_wait_ms: int) -> None:
    """Make ``app``'s consumer wait at most ``max_wait_ms`` for a fetch to fill.

    Faust hard-codes ``fetch_max_wait_ms=1500`` for aiokafka. A fetch request names only
    the partitions whose earlier records were all handed out; when those have nothing new
    (a curated partition between two validate batches), the broker holds the request for
    the whole wait while readings pile up on the partitions left out of it, and each such
    wait lies between the edge and the validate agent (docs/decisions.md, decision 26).
    """
    _FETCH_MAX_WAIT_MS[app] = max_wait_ms
    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "fetch_wait_limited", False):
        return

    def create_limited(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        wait = _FETCH_MAX_WAIT_MS.get(self.app)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # read by the fetcher aiokafka makes at start
        return consumer

    create_limited.fetch_wait_limited = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_limited  # type: ignore[method-assign]


async def seek_to_committed_or_start(
    consumer: Any, positioned_elsewhere: Collection[str] = ()
) -> dict[Any, int | None]:
    """Seek every assigned partition of an aiokafka ``consumer`` to its committed offset, and
    those with nothing committed (no offset, or 0) to their first record, except partitions of
    the ``positioned_elsewhere`` topics (table changelogs: table recovery seeks them itself).

    Faust drops the records it fetched but did not hand to an agent whenever a rebalance
    starts or ends (a generation change, a paused partition, a getmany while the flow is
    stopped), and counts on seeking back to the committed offsets to read them again.
    aiokafka's ``seek_to_committed`` does not move a partition without a committed offset
    (aio-libs/aiokafka#1003), so on a partition whose group has committed nothing yet those
    records would be skipped for good: readings the edge acked, never validated. Seeking such
    a partition to offset 0 reads them again (where retention deleted offset 0, that fetch is
    out of range and the consumer resets to the earliest offset, its policy); no broker call is
    awaited, so the seek adds nothing to the time Faust's rebalance waits. Like any redelivery,
    what was already handled is handled again; the sinks are idempotent on the event id."""
    committed: dict[Any, int | None] = await consumer.seek_to_committed()
    uncommitted = [
        tp
        for tp, offset in committed.items()
        if (offset is None or offset <= 0) and tp.topic not in positioned_elsewhere
    ]
    for tp in uncommitted:
        consumer.seek(tp, 0)
    return committed


def replay_uncommitted_after_rebalance(app: faust.App) -> None:
    """Make ``app``'s consumer seek partitions without a committed offset to their start where
    Faust seeks to committed offsets (:func:`seek_to_committed_or_start`).

    Only for apps that read from the earliest offset (``consumer_auto_offset_reset``): that is
    where such a partition starts anyway, so the seek only restores what Faust dropped."""
    if app.conf.consumer_auto_offset_reset != "earliest":
        raise ValueError("replaying uncommitted partitions needs consumer_auto_offset_reset")
    if getattr(AIOKafkaConsumerThread.seek_to_committed, "replays_uncommitted", False):
        return

    async def seek_to_committed(self: AIOKafkaConsumerThread) -> Any:
        changelogs = frozenset(self.app.tables.changelog_topics)
        consumer = self._ensure_consumer()
        return await self.call_thread(seek_to_committed_or_start, consumer, changelogs)

    seek_to_committed.replays_uncommitted = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]


def store_locally(table: Any, rows: Iterable[tuple[Any, bytes, bytes | None]]) -> None:
    """Write each ``(event, key, value)`` to ``table``'s local store only, in ``event``'s
    partition: no changelog record (``value`` None deletes the key). For callers that produce
    the changelog records themselves, acked, beforehand (``agents.changelog``). The event is
    set directly, not through :func:`writing_as`: a context manager per row cost more than
    the write."""
    data = table.data
    for event, key, value in rows:
        token = _current_event.set(weakref.ref(event))
        try:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        finally:
            _current_event.reset(token)

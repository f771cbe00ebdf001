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
from collections.abc import Iterator
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


def store_locally(table: Any, event: Any, key: bytes, value: bytes | None) -> None:
    """Write ``key`` to ``table``'s local store only, in ``event``'s partition: no changelog
    record (``value`` None deletes it). For callers that produce the changelog record
    themselves, acked, beforehand (``agents.changelog``)."""
    with writing_as(event):
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value

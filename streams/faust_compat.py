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

import logging
import weakref
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import faust
from faust import streams as _faust_streams
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types.tuples import ack_lock

log = logging.getLogger(__name__)

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


def log_offset_holes(app: faust.App) -> None:
    """Warn when ``app``'s consumer counts records as handled that no agent acked.

    When Faust sees a partition's next record at an offset past the one it read last plus
    one, it adds the offsets in between to the acked ones (a "gap": meant for transaction
    markers and compacted topics), so its next commit passes them. The project's topics have
    neither (no transactions, no compaction of what agents read): a hole there is records
    fetched and dropped without a seek back, which committing past loses, or records handed
    out just before a rebalance's seek to committed offsets (Faust then sets its read position
    back to the committed offset while its fetch from before the seek goes on), which agents
    still handle (``keep_queued_records_on_resume``). Faust's behaviour is kept (a topic whose
    start retention deleted would otherwise never commit again); the warning names the
    partition and offsets, so such a loss can be told from a stalled consumer."""
    if getattr(Consumer._add_gap, "holes_logged", False):
        return
    add_gap = Consumer._add_gap

    async def add_gap_logged(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
        if self.app.topics.acks_enabled_for(tp.topic):
            log.warning(
                "offsets %d-%d of %s[%d] were skipped or handed out before a seek; Faust "
                "counts them as handled (committed offset %s)",
                offset_from,
                offset_to - 1,
                tp.topic,
                tp.partition,
                self._committed_offset.get(tp),
            )
        await add_gap(self, tp, offset_from, offset_to)

    add_gap_logged.holes_logged = True  # type: ignore[attr-defined]
    Consumer._add_gap = add_gap_logged  # type: ignore[method-assign]


def log_commits_past_unacked(app: faust.App) -> None:
    """Warn when ``app``'s consumer commits past the record at its committed offset though no
    agent acked that record.

    A committed offset C is the next record to read, but Faust's commit takes it as handled:
    once C+1 is acked (or counted in a gap, which starts at C+1), it commits past C. Where C
    never reached an agent, that loses it without a gap being logged: the three-broker test
    lost raw partition 0's offset 48 so (``keep_queued_records_on_resume``). The commit is
    kept (when retention deleted C, nothing else would commit the partition again); the
    warning names the record."""
    if getattr(Consumer._new_offset, "unacked_logged", False):
        return
    new_offset = Consumer._new_offset

    def new_offset_logged(self: Consumer, tp: Any) -> int | None:
        committed = self._committed_offset[tp]
        acked = not committed or committed in self._acked_index[tp]
        offset = new_offset(self, tp)
        if not acked and offset is not None and committed is not None and offset > committed:
            log.warning(
                "committing %s[%d] at %d, past offset %d, which no agent has acked (lost "
                "unless an agent still has it)",
                tp.topic,
                tp.partition,
                offset,
                committed,
            )
        return offset

    new_offset_logged.unacked_logged = True  # type: ignore[attr-defined]
    Consumer._new_offset = new_offset_logged  # type: ignore[method-assign]


def log_rebalance_commits(app: faust.App) -> None:
    """Log every offset ``app``'s consumer commits while a rebalance is under way.

    Faust forgets a partition's committed offset when the partition is revoked, and commits
    what its agents ack while it waits for them (``wait_empty``): from then until the new
    assignment is read, its only guard against committing past a record nobody handled is
    the order of the acks. These commits are few (one a second at most, while rebalancing),
    and a record lost in a rebalance is found from them."""
    if getattr(Consumer._commit_offsets, "rebalance_logged", False):
        return
    commit_offsets = Consumer._commit_offsets

    async def commit_offsets_logged(self: Consumer, offsets: Any, *args: Any, **kw: Any) -> Any:
        if self.app.rebalancing and offsets:
            described = ", ".join(
                f"{tp.topic}[{tp.partition}]={offset}" for tp, offset in sorted(offsets.items())
            )
            log.info("committing while rebalancing: %s", described)
        return await commit_offsets(self, offsets, *args, **kw)

    commit_offsets_logged.rebalance_logged = True  # type: ignore[attr-defined]
    Consumer._commit_offsets = commit_offsets_logged  # type: ignore[method-assign]


def refuse_stale_acks(app: faust.App) -> None:
    """Let no ack of a record Faust skipped without handing it to an agent move ``app``'s
    offsets.

    Faust stamps each record with the consumer group generation it was fetched in. A stream
    that gets a record of an older generation after a rebalance ("stuck in the conductor",
    Faust says), or any record while the flow is stopped for a rebalance or a stop, skips it
    and acks it, though no agent handled it: its offset would then count towards the next
    commit, and the record would be lost to the worker that reads the partition from there.
    Such acks are refused here (logged): the record stops counting as in flight, its offset is
    not committed, and it is read again from the committed offset (the rebalance ends with a
    seek there). Every record an agent took was tracked when the stream handed it out, and
    Faust waits for those to be acked before a rebalance goes on (``wait_empty``), so an
    agent's ack is never of an older generation, and never of an untracked record."""
    if getattr(Consumer.ack, "refuses_stale", False):
        return
    ack = Consumer.ack

    def ack_handled(self: Consumer, message: Any) -> bool:
        generation = message.generation_id
        stale = generation is not None and generation != self.app.consumer_generation_id
        skipped = not message.tracked and not self.app.flow_control.is_active()
        dropped = getattr(message, "dropped", False)  # a copy of it dropped, never handled
        if not (stale or skipped or dropped) or not self.app.topics.acks_enabled_for(message.topic):
            return ack(self, message)
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
        log.warning(
            "not committing %s[%d] offset %d: %s by Faust, never handed to an agent "
            "(fetched in generation %s, now %s; flow %s); it is read again",
            message.topic,
            message.partition,
            message.offset,
            "dropped from a queue" if dropped else "skipped",
            generation,
            self.app.consumer_generation_id,
            "running" if self.app.flow_control.is_active() else "stopped",
        )
        return False

    ack_handled.refuses_stale = True  # type: ignore[attr-defined]
    Consumer.ack = ack_handled  # type: ignore[method-assign]


def release_dropped_copies(app: faust.App) -> None:
    """When Faust drops records from its agents' queues (``flow_control.clear``: a rebalance,
    a stop), let the copies it dropped stop counting as in flight, and keep such records from
    being committed.

    Faust counts one reference per agent that reads a record's topic (``fleet.curated.v1``:
    ``device-state`` and ``flows``) and commits the record once every reference is acked. A
    copy dropped from a queue is never acked, so a record one agent had taken and the other
    still had queued keeps a reference for good: Faust's ``wait_empty`` then waits for it as
    long as anything still refers to it, and each agent keeps its last batch in hand while it
    waits for the next, which never comes while the flow is stopped. The first worker of the
    three-broker test waited so past the rebalance timeout (docs/scaling.md). Here each
    dropped copy gives its reference back, and the record is marked: when the agents that
    did take it have acked it, it no longer holds up ``wait_empty``, but its offset is not
    committed (:func:`refuse_stale_acks`): the agent that never saw it reads it again after
    the rebalance's seek, like everything dropped."""
    flow_control = app.flow_control
    if getattr(flow_control.clear, "releases_dropped", False):
        return
    clear = flow_control.clear

    def clear_releasing() -> None:
        consumer: Any = app.consumer
        for queue in list(flow_control._queues):
            for item in list(queue._queue):  # type: ignore[attr-defined]
                message = getattr(item, "message", None)
                if message is not None and hasattr(message, "refcount"):
                    _release_dropped(consumer, message)
        clear()

    clear_releasing.releases_dropped = True  # type: ignore[attr-defined]
    flow_control.clear = clear_releasing  # type: ignore[method-assign]


def keep_queued_records_on_resume(app: faust.App) -> None:
    """Let a flow-control resume that finds the flow running leave the agents' queues alone.

    Faust's ``flow_control.resume()`` empties every agent queue, also when nothing was
    suspended. The last step of a rebalance's recovery calls it while the flow runs, after
    resuming the source partitions and *after* seeking them to their committed offsets
    (``Recovery.on_recovery_completed``, ``_resume_streams``): the fetch loop has been handing
    records to the agents meanwhile, and its read position has moved past them, so the
    records read again from the committed offset are dropped as already handed out, and the
    ones emptied from the queues never reach an agent. Faust then commits past them: as a
    "gap" when the loop's next record is further on, and, for the record at the committed
    offset itself, because Faust takes committed offset C to mean C was handled (it commits
    past C once C+1 is acked). That is how the three-broker test lost raw partition 0's offset
    48 with no gap logged there (docs/scaling.md, decision 43).

    A resume that ends a suspension (the rebalance's start suspended the flow and emptied the
    queues, ``release_dropped_copies``) still empties them, as before. One that finds the flow
    running keeps the agents' records, which were handed out in this generation with the flow
    running; only the tables' changelog queue is emptied, as Faust does, so table recovery is
    unchanged."""
    flow_control = app.flow_control
    if getattr(flow_control.resume, "keeps_queued", False):
        return
    resume = flow_control.resume

    def resume_keeping_queued() -> None:
        if not flow_control.is_active():
            resume()
            return
        cast(Any, app.tables).changelog_queue.clear()

    resume_keeping_queued.keeps_queued = True  # type: ignore[attr-defined]
    flow_control.resume = resume_keeping_queued  # type: ignore[method-assign]


def _release_dropped(consumer: Any, message: Any) -> None:
    with ack_lock:
        message.dropped = True
        if not message.acked and message.decref() == 0:
            message.acked = True  # every agent that took it has acked it: nothing to wait for
            consumer._unacked_messages.discard(message)

"""Table writes inside a taken batch: the private Faust hook still works as we rely on it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import faust
import pytest
from aiokafka import TopicPartition as TP
from faust.streams import current_event

from streams.faust_compat import seek_to_committed_or_start, writing_as
from tests.support import event_in
from tests.unit.streams.worker_app import worker_app


@pytest.fixture
async def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> faust.Table[str, int]:
    app = faust.App("compat-test", store="memory://", datadir=str(tmp_path), topic_partitions=4)
    table = cast("faust.Table[str, int]", app.Table("status", partitions=4))
    # Faust checks the source topic's partition count against the broker's metadata (it
    # starts a consumer thread for that); that check is not what this test is about.
    monkeypatch.setattr(table, "_verify_source_topic_partitions", lambda topic: None)
    return table


async def test_outside_a_stream_faust_refuses_table_writes(table: faust.Table[str, int]) -> None:
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table.partition_for_key("esp32-a")


async def test_writing_as_an_event_sends_the_changelog_to_its_partition(
    table: faust.Table[str, int],
) -> None:
    event = event_in("source", 2)
    with writing_as(event):
        assert current_event() is cast(Any, event)
        assert table.partition_for_key("esp32-a") == 2
    assert current_event() is None


async def test_the_worker_app_buffers_changelog_writes_and_fetches_without_long_waits(
    tmp_path: Path,
) -> None:
    from schemas.settings import Settings
    from streams.app import CHANGELOG_BUFFER_MAX, COMMIT_EVERY_DISABLED, create_app

    base = Settings()
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"fetch_max_wait_ms": 37}),
            "worker": base.worker.model_copy(update={"datadir": tmp_path}),
        }
    )
    app = create_app(settings)
    assert app.producer.buffer.max_messages == CHANGELOG_BUFFER_MAX
    assert app.conf.broker_commit_every == COMMIT_EVERY_DISABLED
    thread = cast(Any, app.consumer)._thread
    consumer = thread._create_worker_consumer(app.transport)  # built, never started
    try:
        assert consumer._fetch_max_wait_ms == 37
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # the consumer thread's own loop, made but never run


class SeekingConsumer:
    """What :func:`seek_to_committed_or_start` uses of an aiokafka consumer, recording seeks.

    Like aiokafka's, ``seek_to_committed`` moves only partitions committed past offset 0."""

    def __init__(self, committed: dict[TP, int | None], positions: dict[TP, int]) -> None:
        self.committed = committed
        self.positions = positions

    async def seek_to_committed(self) -> dict[TP, int | None]:
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self.positions[tp] = offset
        return dict(self.committed)

    def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset


RAW_0, RAW_1, RAW_2 = TP("raw", 0), TP("raw", 1), TP("raw", 2)
STATUS_CHANGELOG = TP("status-changelog", 0)


async def test_partitions_without_a_committed_offset_are_read_again_from_their_start() -> None:
    """Records fetched past the committed offset and dropped by Faust in a rebalance are read
    again: where something was committed from there, where nothing was from the start; a
    changelog partition stays where table recovery put it."""
    consumer = SeekingConsumer(
        committed={RAW_0: 120, RAW_1: None, RAW_2: 0, STATUS_CHANGELOG: None},
        positions={RAW_0: 130, RAW_1: 1, RAW_2: 7, STATUS_CHANGELOG: 40},
    )
    committed = await seek_to_committed_or_start(consumer, {"status-changelog"})
    assert consumer.positions == {RAW_0: 120, RAW_1: 0, RAW_2: 0, STATUS_CHANGELOG: 40}
    assert committed == {RAW_0: 120, RAW_1: None, RAW_2: 0, STATUS_CHANGELOG: None}


async def test_the_worker_app_seeks_through_the_replaying_seek(tmp_path: Path) -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from schemas.settings import Settings
    from streams.app import create_app

    base = Settings()
    worker = base.worker.model_copy(update={"datadir": tmp_path})
    app = create_app(base.model_copy(update={"worker": worker}))
    thread = cast(Any, app.consumer)._thread
    assert isinstance(thread, AIOKafkaConsumerThread)
    calls: list[Any] = []

    async def call_thread(fun: Any, *args: Any) -> Any:
        calls.append((fun, args))
        return {}

    thread.call_thread = call_thread  # type: ignore[method-assign]
    thread._ensure_consumer = lambda: "the aiokafka consumer"  # type: ignore[method-assign]
    app.Table("status", partitions=4)
    try:
        await thread.seek_to_committed()
    finally:
        thread.thread_loop.close()  # the consumer thread's own loop, made but never run
    changelogs = frozenset({f"{app.conf.id}-status-changelog"})
    assert calls == [(seek_to_committed_or_start, ("the aiokafka consumer", changelogs))]


async def test_an_app_reading_from_the_latest_offset_is_refused(tmp_path: Path) -> None:
    from streams.faust_compat import replay_uncommitted_after_rebalance

    app = faust.App("latest", datadir=str(tmp_path), consumer_auto_offset_reset="latest")
    with pytest.raises(ValueError, match="consumer_auto_offset_reset"):
        replay_uncommitted_after_rebalance(app)


async def test_a_hole_in_an_agent_topic_is_counted_as_handled_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Faust's "gap" (its next record past the last one read plus one) still counts the
    offsets in between as handled, and the worker says which they were."""
    app = worker_app(tmp_path)
    consumer = cast(Any, app.consumer)
    cast(Any, app.topics)._acking_topics.add("raw")
    try:
        with caplog.at_level("WARNING", logger="streams.faust_compat"):
            await consumer._add_gap(RAW_1, 8, 15)  # record 15 read right after record 7
            await consumer._add_gap(STATUS_CHANGELOG, 3, 9)  # no agent reads it: no warning
        assert sorted((i.begin, i.end) for i in consumer._gap[RAW_1]) == [(8, 16)]
        assert [r.getMessage() for r in caplog.records] == [
            "offsets 8-14 of raw[1] were skipped or handed out before a seek; Faust counts them as "
            "handled (committed offset None)"
        ]
    finally:
        cast(Any, app.consumer)._thread.thread_loop.close()


async def test_commits_made_while_rebalancing_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = worker_app(tmp_path)
    consumer = cast(Any, app.consumer)
    committed: list[dict[Any, int]] = []

    async def commit(offsets: dict[Any, int]) -> bool:
        committed.append(dict(offsets))
        return True

    consumer._commit = commit
    consumer.assignment = lambda: {RAW_0, RAW_1}
    try:
        with caplog.at_level("INFO", logger="streams.faust_compat"):
            await consumer._commit_offsets({RAW_1: 40, RAW_0: 12})  # not rebalancing: quiet
            app.rebalancing = True
            await consumer._commit_offsets({RAW_1: 41, RAW_0: 13})
        assert committed == [{RAW_1: 40, RAW_0: 12}, {RAW_1: 41, RAW_0: 13}]
        assert [r.getMessage() for r in caplog.records] == [
            "committing while rebalancing: raw[0]=13, raw[1]=41"
        ]
    finally:
        consumer._thread.thread_loop.close()


async def test_acks_of_records_faust_skipped_without_an_agent_commit_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Faust skips and acks a record of an older generation that reaches a stream after a
    rebalance, and any record a stream gets while the flow is stopped; no agent handled
    those, so their offsets must not count towards a commit. A record a stream handed out
    (tracked) is committed when acked, flow stopped or not."""
    from faust.types.tuples import Message

    app = worker_app(tmp_path)
    consumer = cast(Any, app.consumer)
    cast(Any, app.topics)._acking_topics.add("raw")
    app.consumer_generation_id = 5

    def message(offset: int, generation: int, *, tracked: bool) -> Message:
        made = Message("raw", 1, offset, 0.0, 0, None, None, b"{}", None, generation_id=generation)
        made.tracked = tracked
        consumer._unacked_messages.add(made)
        return made

    stale = message(40, 4, tracked=False)
    handled = message(41, 5, tracked=True)
    while_stopped = message(42, 5, tracked=False)
    handled_while_stopped = message(43, 5, tracked=True)
    try:
        app.flow_control.resume()
        with caplog.at_level("WARNING", logger="streams.faust_compat"):
            assert consumer.ack(stale) is False
            assert consumer.ack(handled) is True
            app.flow_control.suspend()
            assert consumer.ack(while_stopped) is False
            assert consumer.ack(handled_while_stopped) is True
        assert list(consumer._acked[RAW_1]) == [41, 43]
        assert stale.acked and while_stopped.acked and not consumer._unacked_messages
        assert [r.getMessage() for r in caplog.records] == [
            "not committing raw[1] offset 40: skipped by Faust, never handed to an agent "
            "(fetched in generation 4, now 5; flow running); it is read again",
            "not committing raw[1] offset 42: skipped by Faust, never handed to an agent "
            "(fetched in generation 5, now 5; flow stopped); it is read again",
        ]
    finally:
        consumer._thread.thread_loop.close()


class _Copy:
    """What Faust queues for an agent: an event, here only its message."""

    def __init__(self, message: Any) -> None:
        self.message = message


def _curated_record(consumer: Any, offset: int) -> Any:
    """A record of a topic two agents read, handed to both (Faust's conductor increfs it once
    per agent) and taken by the first one's stream (tracked)."""
    from faust.types.tuples import ConsumerMessage

    message = ConsumerMessage("curated", 3, offset, 0.0, 0, None, None, b"{}", None)
    message.incref(2)
    message.tracked = True
    consumer._unacked_messages.add(message)
    return message


async def test_a_record_one_agent_took_and_the_other_lost_in_a_clear_does_not_hold_up_faust(
    tmp_path: Path,
) -> None:
    """device-state took a curated record and acked it; flows still had its copy queued when
    the rebalance cleared the queues. Faust's wait for in-flight records must end (the test
    holds the record, as an agent holds its last batch), and the offset is not committed."""
    app = worker_app(tmp_path)
    consumer = cast(Any, app.consumer)
    cast(Any, app.topics)._acking_topics.add("curated")
    flows_queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    acked_then_cleared = _curated_record(consumer, 54)
    cleared_then_acked = _curated_record(consumer, 55)
    try:
        app.flow_control.resume()
        assert acked_then_cleared.ack(consumer) is False  # device-state: one of two references
        for message in (acked_then_cleared, cleared_then_acked):
            flows_queue.put_nowait(_Copy(message))  # flows has not got to them yet
        app.flow_control.suspend()
        app.flow_control.clear()  # the rebalance drops flows' copies
        assert flows_queue.empty()
        assert cleared_then_acked.ack(consumer) is False  # device-state finishes it after
        await asyncio.wait_for(consumer.wait_empty(), timeout=10)
        assert not consumer._acked[TP("curated", 3)]  # neither offset is committed
        assert acked_then_cleared.acked and cleared_then_acked.acked
    finally:
        consumer._thread.thread_loop.close()

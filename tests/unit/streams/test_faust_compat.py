"""Table writes inside a taken batch: the private Faust hook still works as we rely on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import faust
import pytest
from faust.streams import current_event

from streams.faust_compat import writing_as
from tests.support import event_in


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

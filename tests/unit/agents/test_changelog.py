"""Table rows through our producer: the changelog records, then the local store, no Faust send."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import faust
import pytest

from agents.changelog import TableRows
from streams.outputs import Outputs
from tests.support import event_in


def _table(tmp_path: Path) -> Any:
    app = faust.App("changelog-test", store="memory://", datadir=str(tmp_path), topic_partitions=4)
    return app.Table("device-status", key_type=bytes, value_type=bytes, partitions=4)


async def test_rows_become_changelog_records_in_their_events_partitions(tmp_path: Path) -> None:
    table = _table(tmp_path)
    rows = TableRows(table)
    rows.add(event_in("curated", 2), b"esp32-a", b"state-a")
    rows.add(event_in("curated", 3), b"esp32-b", b"state-b")
    records = rows.outputs().records("changelog-test-device-status-changelog")
    assert [(r.key, r.value, r.partition) for r in records] == [
        (b"esp32-a", b"state-a", 2),
        (b"esp32-b", b"state-b", 3),
    ]
    assert len(rows) == 2


async def test_store_fills_the_table_without_a_changelog_send_of_faust(tmp_path: Path) -> None:
    table = _table(tmp_path)
    rows = TableRows(table)
    rows.add(event_in("curated", 1), b"esp32-a", b"state-a")
    rows.store()
    assert table.get(b"esp32-a") == b"state-a"
    # Faust's own path would have queued a changelog record (and needed a running producer).
    assert cast(Any, table.app).producer.buffer.size == 0


async def test_write_stores_only_after_the_publish_returned(tmp_path: Path) -> None:
    table = _table(tmp_path)
    rows = TableRows(table)
    rows.add(event_in("curated", 0), b"esp32-a", b"state-a")
    seen_at_publish: list[object] = []

    async def publish(outputs: Outputs) -> None:
        seen_at_publish.append(table.get(b"esp32-a"))

    await rows.write(publish)
    assert seen_at_publish == [None]
    assert table.get(b"esp32-a") == b"state-a"


async def test_a_failed_publish_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    table = _table(tmp_path)
    rows = TableRows(table)
    rows.add(event_in("curated", 0), b"esp32-a", b"state-a")

    async def publish(outputs: Outputs) -> None:
        raise RuntimeError("broker gone")

    with pytest.raises(RuntimeError):
        await rows.write(publish)
    assert table.get(b"esp32-a") is None


async def test_a_none_row_is_a_tombstone_and_leaves_the_store(tmp_path: Path) -> None:
    table = _table(tmp_path)
    kept = TableRows(table)
    kept.add(event_in("curated", 1), b"esp32-a", b"state-a")
    kept.add(event_in("curated", 1), b"esp32-b", b"state-b")
    kept.store()
    deleted = TableRows(table)
    deleted.add(event_in("curated", 1), b"esp32-a", None)
    deleted.add(event_in("curated", 1), b"esp32-never-stored", None)
    records = deleted.outputs().records("changelog-test-device-status-changelog")
    assert [(r.key, r.value, r.partition) for r in records] == [
        (b"esp32-a", None, 1),
        (b"esp32-never-stored", None, 1),
    ]
    deleted.store()
    assert table.get(b"esp32-a") is None
    assert table.get(b"esp32-b") == b"state-b"

"""Table rows through our producer: the changelog records, then the local store, no Faust send."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import faust
import pytest

from agents.changelog import Quarantine, TableRows
from schemas.events import decode_dead_letter
from schemas.status import RollupState, decode_rollup_state, encode
from streams.outputs import Outputs
from tests import clock
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


class _Changelog:
    def get_topic_name(self) -> str:
        return "worker-rollups-changelog"


class _Table:
    name = "rollups"
    changelog_topic = _Changelog()


def test_a_row_that_does_not_decode_is_dead_lettered_once_and_reads_as_none() -> None:
    quarantine = Quarantine(_Table(), clock.now)
    good = encode(RollupState(device_id="esp32-a", late=2))
    assert quarantine.decode(b"esp32-a", good, decode_rollup_state) == decode_rollup_state(good)
    assert quarantine.decode(b"esp32-a", None, decode_rollup_state) is None
    bad = b'{"device_id": "esp32-b", "windows": {"0": {"x": [1, null, 2, 3]}}}'
    assert quarantine.decode(b"esp32-b", bad, decode_rollup_state) is None
    [record] = quarantine.take()
    letter = decode_dead_letter(record.value or b"")
    assert (letter.stage, letter.key, letter.original) == ("rollups.state", "esp32-b", bad)
    assert letter.source_topic == "worker-rollups-changelog"
    assert letter.failed_at == clock.now()
    assert quarantine.take() == []

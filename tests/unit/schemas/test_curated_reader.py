"""Reading a curated envelope into typed items: the whole envelope in one decode, and item by
item only when one is bad, so the good ones are kept with their bytes and positions."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from agents.postgres_sink import ReadingsSink
from agents.redis_sink import merge
from agents.sink_group import SinkMessage
from schemas.envelopes import CURATED_FORMAT, CuratedReader, curated_envelope
from schemas.errors import ValidationFailure
from schemas.events import decode_dead_letter, encode_curated
from tests.clock import now
from tests.factories import raw_event, reading
from tests.pipeline_helpers import read_batch, validate_event

NOW = now()


class Row(msgspec.Struct, frozen=True):
    event_id: str
    n: int


def item(n: int) -> bytes:
    return msgspec.json.encode({"event_id": f"e{n}", "n": n, "ignored": [n]})


BAD = b'{"event_id": "e-bad", "n": "not a number"}'


def test_every_item_decodes_in_order_with_its_bytes_and_position() -> None:
    items = [item(n) for n in range(3)]
    value = curated_envelope(items, [(2, 10, n) for n in range(3)])
    read = CuratedReader(Row, positions=True).read(value)
    assert [row.n for row in read.items] == [0, 1, 2]
    assert list(read.indexes) == [0, 1, 2]
    assert [bytes(raw) for raw in read.raws()] == items
    assert read.positions == [(2, 10, 0), (2, 10, 1), (2, 10, 2)]
    assert read.failures == []


def test_a_bad_item_is_named_and_the_others_keep_their_bytes_and_positions() -> None:
    items = [item(0), BAD, item(2), item(3)]
    value = curated_envelope(items, [(1, 7, n) for n in range(4)])
    read = CuratedReader(Row, positions=True).read(value)
    assert [row.n for row in read.items] == [0, 2, 3]
    assert list(read.indexes) == [0, 2, 3]
    assert [bytes(raw) for raw in read.raws()] == [items[0], items[2], items[3]]
    assert read.positions == [(1, 7, 0), (1, 7, 2), (1, 7, 3)]
    [failure] = read.failures
    assert (failure.index, failure.original) == (1, BAD)
    assert [error.loc for error in failure.error.errors] == [("n",)]


def test_positions_only_when_asked_for_and_recorded() -> None:
    value = curated_envelope([item(0), BAD], [(0, 1, 0), (0, 1, 1)])
    assert CuratedReader(Row).read(value).positions is None
    assert CuratedReader(Row).read(value.replace(BAD, item(1))).positions is None
    without_positions = CuratedReader(Row, positions=True).read(curated_envelope([item(0)]))
    assert without_positions.positions is None


@pytest.mark.parametrize(
    ("value", "loc"),
    [
        (b"", ()),
        (b"not json", ()),
        (b'{"format": "raw-envelope/2", "items": []}', ("format",)),
        (curated_envelope([item(0), item(1)], [(0, 1, 0)]), ("positions",)),
        (curated_envelope([item(0), BAD], [(0, 1, 0)]), ("positions",)),
        (b'{"format": "' + CURATED_FORMAT.encode() + b'", "items": 5}', ("items",)),
    ],
)
def test_a_record_that_is_not_a_curated_envelope_fails_as_a_whole(
    value: bytes, loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationFailure) as caught:
        CuratedReader(Row, positions=True).read(value)
    assert caught.value.errors[0].loc == loc


def curated(device_id: str, n: int) -> bytes:
    return encode_curated(validate_event(raw_event(reading(device_id, n)), now=NOW))


def message(value: bytes, offset: int = 0) -> SinkMessage:
    return SinkMessage("curated", 0, offset, None, value, 0.0, None)


def test_the_stateful_agents_keep_each_good_items_position_past_a_bad_one() -> None:
    items = [curated("esp32-a", 0), BAD, curated("esp32-b", 2), curated("esp32-a", 3)]
    value = curated_envelope(items, [(3, 40, n) for n in range(4)])
    batch = read_batch([message(value)], stage="status", now=NOW)
    by_device = {device: [pos for _, pos in entry.items] for device, entry in batch.devices.items()}
    assert by_device == {"esp32-a": [(3, 40, 0), (3, 40, 3)], "esp32-b": [(3, 40, 2)]}
    [letter] = [decode_dead_letter(record.value or b"") for record in batch.letters]
    assert (letter.item, letter.original) == (1, BAD)


async def test_the_redis_sink_keeps_each_good_items_bytes_past_a_bad_one() -> None:
    items = [curated("esp32-a", 0), BAD, curated("esp32-a", 3)]
    batch, letters = await merge(
        [message(curated_envelope(items))],
        readings_topic="curated",
        deadletter_topic="dead",
        now=NOW,
    )
    assert batch.devices["esp32-a"].items == [items[0], items[2]]
    [letter] = [decode_dead_letter(record.value or b"") for record in letters.records("dead")]
    assert (letter.item, letter.original) == (1, BAD)


class Store:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def write(self, lines: Sequence[bytes]) -> int:
        self.lines.extend(lines)
        return len(lines)


async def test_the_postgres_sink_writes_the_good_items_and_names_the_bad_one() -> None:
    items = [curated("esp32-a", 0), BAD, curated("esp32-b", 2)]
    store = Store()
    letters = await ReadingsSink(store, "dead", backoff_max_s=0.01).write_batch(
        [message(curated_envelope(items))]
    )
    written = [line.split(b"\x02")[1] for line in store.lines]
    assert written == [b"esp32-a", b"esp32-b"]
    [letter] = [decode_dead_letter(record.value or b"") for record in letters.records("dead")]
    assert (letter.item, letter.original) == (1, BAD)

"""Group commit: readings of concurrent callers share envelopes; nobody is answered early."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from connectors.kafka.batcher import BatcherLimits, EnvelopeBatcher
from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.partitioner import partition_for
from connectors.kafka.producer import Record
from schemas.envelopes import FORMAT_HEADER, RAW_FORMAT, decode_raw_record, encode_item
from tests import clock
from tests.factories import raw_event, reading


class GatedProducer:
    """Holds every produce call until the test opens the gate (the broker's ack)."""

    def __init__(self) -> None:
        self.calls: list[list[Record]] = []
        self.gate = asyncio.Event()
        self.called = asyncio.Event()
        self.fail_with: Exception | None = None

    async def produce_all(self, topic: str, records: Sequence[Record]) -> None:
        self.calls.append(list(records))
        self.called.set()
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with

    async def partition_count(self, topic: str) -> int:
        raise AssertionError("the tests give the batcher its partition count")


def item(device: str, n: int) -> tuple[str, bytes]:
    return device, encode_item(raw_event(reading(device, n)))


def event_ids(record: Record) -> list[str]:
    assert record.value is not None
    decoded = decode_raw_record(
        record.value, record_id="t", record_time=clock.now(), format_header=None
    )
    return [event.event_id for event in decoded.events]


async def test_callers_wait_for_the_ack_of_the_envelope_holding_their_readings() -> None:
    producer = GatedProducer()
    batcher = EnvelopeBatcher(producer, "raw", 4, BatcherLimits(linger_s=0.001))
    callers = [asyncio.create_task(batcher.submit([item("dev-a", n)])) for n in range(5)]
    await producer.called.wait()
    assert not any(caller.done() for caller in callers), "answered before the broker acked"
    producer.gate.set()
    await asyncio.gather(*callers)
    ((record,),) = producer.calls
    assert len(event_ids(record)) == 5
    assert record.partition == partition_for("dev-a", 4)
    assert record.headers == [(FORMAT_HEADER, RAW_FORMAT.encode())]


async def test_a_failed_envelope_fails_every_caller_in_it() -> None:
    producer = GatedProducer()
    producer.fail_with = KafkaUnavailable("broker away")
    producer.gate.set()
    batcher = EnvelopeBatcher(producer, "raw", 4, BatcherLimits(linger_s=0.001))
    results = await asyncio.gather(
        batcher.submit([item("dev-a", 0)]),
        batcher.submit([item("dev-a", 1), item("dev-b", 2)]),
        return_exceptions=True,
    )
    assert all(isinstance(result, KafkaUnavailable) for result in results)


async def test_full_envelopes_are_cut_and_every_reading_is_produced_once() -> None:
    producer = GatedProducer()
    producer.gate.set()
    batcher = EnvelopeBatcher(producer, "raw", 2, BatcherLimits(linger_s=0.001, max_items=7))
    readings = [item(f"dev-{n % 5}", n) for n in range(50)]
    await batcher.submit(readings)
    records = [record for call in producer.calls for record in call]
    produced = [event_id for record in records for event_id in event_ids(record)]
    assert len(produced) == 50
    assert len(set(produced)) == 50
    assert all(len(event_ids(record)) <= 7 for record in records)


@pytest.mark.parametrize("max_bytes", [2_000, 10_000])
async def test_envelopes_stay_under_the_byte_limit(max_bytes: int) -> None:
    producer = GatedProducer()
    producer.gate.set()
    limits = BatcherLimits(linger_s=0.001, max_bytes=max_bytes)
    await EnvelopeBatcher(producer, "raw", 1, limits).submit([item("dev-a", n) for n in range(100)])
    sizes = [len(record.value or b"") for call in producer.calls for record in call]
    assert len(sizes) > 1
    assert max(sizes) <= max_bytes


async def test_a_caller_that_goes_away_does_not_cancel_the_envelope_of_the_others() -> None:
    """A device that disconnects cancels its own wait; the readings it shares an envelope with
    are still produced and their callers answered."""
    producer = GatedProducer()
    batcher = EnvelopeBatcher(producer, "raw", 4, BatcherLimits(linger_s=0.001))
    leaving = asyncio.create_task(batcher.submit([item("dev-a", 0)]))
    staying = asyncio.create_task(batcher.submit([item("dev-a", 1)]))
    await producer.called.wait()
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    producer.gate.set()
    await staying
    ((record,),) = producer.calls
    assert len(event_ids(record)) == 2


async def test_added_readings_share_their_envelope_s_future_until_the_broker_acks_it() -> None:
    """``add`` (the MQTT front, no task a message) places the readings at once: those of one
    partition wait on one future, done only once the broker acked their envelope."""
    producer = GatedProducer()
    batcher = EnvelopeBatcher(producer, "raw", 4, BatcherLimits(linger_s=0.001))
    first, second = batcher.add([item("dev-a", 0)]), batcher.add([item("dev-a", 1)])
    assert first is second
    await producer.called.wait()
    assert not first.done(), "done before the broker acked"
    producer.gate.set()
    await asyncio.wait((first,))
    assert first.result() is None
    ((record,),) = producer.calls
    assert len(event_ids(record)) == 2


async def test_an_add_spanning_envelopes_is_done_when_all_of_them_are_acked() -> None:
    producer = GatedProducer()
    producer.gate.set()
    batcher = EnvelopeBatcher(producer, "raw", 4, BatcherLimits(linger_s=0.001, max_items=1))
    both = batcher.add([item("dev-a", 0), item("dev-a", 1)])  # two envelopes of one item
    await asyncio.wait((both,))
    assert both.result() is None
    assert sum(len(call) for call in producer.calls) == 2

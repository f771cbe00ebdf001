"""The dead-letter tools and the status history read any number of records: by end offsets
and progress, not by a count of polls (which failed past ~150 letters)."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from connectors.kafka.deadletters import read_letters
from connectors.kafka.partitioner import partition_for
from schemas.envelopes import single_item_envelope
from schemas.events import DeadLetter, encode_dead_letter
from schemas.settings import Settings
from schemas.status import encode
from streams.web.devices import transitions
from tests import clock
from tests.factories import raw_event, reading, status_change
from tests.integration.kafka_tools import raw_events, read_to_end
from tests.integration.processes import run_cli

LETTERS = 100_000


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """On the partition our writers give each key (murmur2, as Kafka's Java clients; not
    librdkafka's default partitioner)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    for key, value in records:
        partition = partition_for(key.decode(), partitions)
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def _letter(n: int) -> tuple[bytes, bytes]:
    letter = DeadLetter(
        stage="validate",
        reason=f"letter {n}",
        error_type="ValidationFailure",
        source_topic="fleet.raw.v1",
        partition=n % 3,
        offset=n,
        key=f"esp32-{n % 500:03d}",
        original=b"{}",
        failed_at=clock.now(),
    )
    return (letter.key or "").encode(), encode_dead_letter(letter)


def test_100000_letters_are_read_to_the_end_and_listed(pipeline: Settings) -> None:
    bootstrap, topic = pipeline.kafka.bootstrap_servers, pipeline.topics.deadletter
    _produce(bootstrap, topic, [_letter(n) for n in range(LETTERS)])

    reasons = {letter.reason for letter in read_letters(bootstrap, topic)}
    assert len(reasons) == LETTERS

    listed = run_cli(pipeline, "deadletters", "list", "--device", "esp32-007", timeout_s=300)
    assert listed.splitlines()[-1] == f"100 of {LETTERS // 500} matching dead letters"


def test_a_devices_history_is_found_behind_many_other_devices_changes(pipeline: Settings) -> None:
    bootstrap, topic = pipeline.kafka.bootstrap_servers, pipeline.topics.device_status
    at = clock.now()
    others = [status_change(f"esp32-{n:05d}", 1, at) for n in range(20_000)]
    mine = [status_change("esp32-mine", seq, at) for seq in (1, 2, 3)]
    records = [(c.device_id.encode(), encode(c)) for c in [*others[:10_000], *mine, *others]]
    _produce(bootstrap, topic, records)
    assert [c.seq for c in transitions(bootstrap, topic, "esp32-mine")] == [3, 2, 1]


def _event_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _replayable_letter(n: int) -> tuple[bytes, bytes]:
    device_id = f"esp32-{n % 500:03d}"
    event = raw_event(reading(device_id, n), event_id=_event_id(n))
    letter = DeadLetter(
        stage="validate",
        reason="its sensor was not in the catalogue yet",
        error_type="ValidationFailure",
        source_topic="fleet.raw.v1",
        partition=n % 3,
        offset=n,
        key=device_id,
        original=single_item_envelope(event),
        failed_at=clock.now(),
    )
    return device_id.encode(), encode_dead_letter(letter)


@pytest.mark.slow
def test_100000_letters_are_replayed_in_bounded_chunks_each_reading_once(
    pipeline: Settings,
) -> None:
    bootstrap = pipeline.kafka.bootstrap_servers
    _produce(bootstrap, pipeline.topics.deadletter, [_replayable_letter(n) for n in range(LETTERS)])

    report = json.loads(
        run_cli(pipeline, "deadletters", "replay", "--stage", "validate", "--json", timeout_s=600)
    )
    assert report["letters"] == report["readings"] == LETTERS and report["skipped"] == {}

    records = read_to_end(bootstrap, pipeline.topics.raw, timeout_s=120)
    assert len(records) == report["records"]
    replayed = [event for record in records for event in raw_events(record)]
    assert sorted(event.event_id for event in replayed) == [_event_id(n) for n in range(LETTERS)]
    assert {event.replayed for event in replayed} == {1}

"""``fleetstream deadletters``: look at the dead-letter topic and replay what can be replayed.

``list`` reads ``fleet.deadletter.v1`` from the beginning to its current end (no consumer
group, nothing committed) and prints the letters matching the filters, as a table or JSON.

``replay`` puts the readings of the matching letters back on ``fleet.raw.v1`` (as envelopes on
their device's partition, acked with ``acks=all``), so the validate agent reads them again —
after the operator fixed what was wrong (registered the device, changed a policy, extended the
catalogue). Every replayed reading carries ``replayed`` + 1; a reading already replayed
``FLEET_STREAM__MAX_REPLAYS`` times is not replayed (and the validate agent dead-letters one
that was), so a replay loop cannot happen. ``--dry-run`` shows what would be replayed.
Replayed readings keep their event ids: the sinks store each once.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import typer
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from cli.runner import operator_errors
from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.partitioner import partition_for
from schemas.envelopes import FORMAT_HEADER, RAW_FORMAT, decode_raw_record, encode_item
from schemas.envelopes import raw_envelope as build_raw_envelope
from schemas.events import (
    DeadLetter,
    RawEvent,
    curated_decoder,
    dead_letter_decoder,
)
from streams.settings import Settings, get_settings

deadletters_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic: list, replay.")

DeviceOpt = Annotated[str | None, typer.Option("--device", help="only this device_id")]
StageOpt = Annotated[str | None, typer.Option(help="only this stage, e.g. validate")]
ReasonOpt = Annotated[str | None, typer.Option(help="only reasons containing this text")]
SinceOpt = Annotated[datetime | None, typer.Option(help="failed at or after (ISO 8601)")]
UntilOpt = Annotated[datetime | None, typer.Option(help="failed before (ISO 8601)")]


@dataclass(frozen=True)
class Filters:
    device: str | None = None
    stage: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def match(self, letter: DeadLetter) -> bool:
        failed = letter.failed_at
        return (
            (self.device is None or letter.key == self.device)
            and (self.stage is None or letter.stage == self.stage)
            and (self.reason is None or self.reason.lower() in letter.reason.lower())
            and (self.since is None or failed >= _aware(self.since))
            and (self.until is None or failed < _aware(self.until))
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_letters(settings: Settings, timeout_s: float = 30.0) -> Iterator[DeadLetter]:
    """Every dead letter now on the topic (undecodable records are skipped)."""
    topic = settings.topics.deadletter
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"fleetstream-deadletters-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise KafkaUnavailable(f"topic {topic} is not there (run `fleetstream topics create`)")
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.topics[topic].partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        polls = int(timeout_s / 0.2)
        while pending and polls > 0:
            message = consumer.poll(0.2)
            polls -= 1
            if message is None or message.error() is not None:
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
            try:
                yield dead_letter_decoder.decode(message.value() or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
        if pending:
            raise KafkaUnavailable(f"could not read {topic} to its end in {timeout_s:.0f} s")
    finally:
        consumer.close()


def replayable(letter: DeadLetter, max_replays: int) -> tuple[list[RawEvent], str | None]:
    """The readings of ``letter`` as they go back on the raw topic, or why there are none."""
    record = decode_raw_record(
        letter.original,
        record_id=f"{letter.source_topic}/{letter.partition}/{letter.offset}",
        record_time=letter.failed_at,
        format_header=None,
    )
    events = list(record.events)
    if not events:
        events = _from_curated(letter.original)
    if not events:
        return [], "the original holds no reading (undecodable)"
    if any(event.replay_count >= max_replays for event in events):
        return [], f"already replayed {max_replays} time(s)"
    return [msgspec.structs.replace(e, replayed=e.replay_count + 1) for e in events], None


def _from_curated(original: bytes) -> list[RawEvent]:
    """A sink's dead letter holds a curated reading: rebuild the reading a device sent."""
    try:
        curated = curated_decoder.decode(original)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    payload: dict[str, Any] = {
        "device_id": curated.device_id,
        "timestamp": curated.ts,
        "event_id": curated.event_id,
        "sensors": curated.sensors,
    }
    if curated.metadata is not None:
        payload["metadata"] = curated.metadata
    return [
        RawEvent(
            event_id=curated.event_id,
            device_id=curated.device_id,
            received_at=curated.received_at,
            source=curated.source,
            payload=msgspec.Raw(msgspec.json.encode(payload)),
            replayed=curated.replayed,
        )
    ]


def produce_replays(settings: Settings, events: list[RawEvent]) -> int:
    """Put ``events`` on the raw topic as envelopes on their partitions; return the records."""
    topic = settings.topics.raw
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": settings.kafka.envelope_max_bytes * 2,
        }
    )
    metadata = producer.list_topics(topic, timeout=10)
    if topic not in metadata.topics:
        raise KafkaUnavailable(f"topic {topic} is not there")
    partitions = len(metadata.topics[topic].partitions)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for event in events:
        by_partition[partition_for(event.device_id, partitions)].append(encode_item(event))
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    records = 0
    for partition, items in by_partition.items():
        for start in range(0, len(items), settings.kafka.envelope_max_items):
            chunk = items[start : start + settings.kafka.envelope_max_items]
            producer.produce(
                topic,
                build_raw_envelope(chunk),
                partition=partition,
                headers=[(FORMAT_HEADER, RAW_FORMAT.encode())],
                on_delivery=delivered,
            )
            records += 1
    if producer.flush(30) or failures:
        raise KafkaUnavailable(f"replay not acked by the broker: {failures or 'timed out'}")
    return records


@deadletters_app.command("list")
def list_letters(
    device: DeviceOpt = None,
    stage: StageOpt = None,
    reason: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many (the newest)")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Show dead letters (newest last), filtered."""
    settings = get_settings()
    filters = Filters(device, stage, reason, since, until)
    with operator_errors():
        letters = [letter for letter in read_letters(settings) if filters.match(letter)]
    letters.sort(key=lambda letter: letter.failed_at)
    shown = letters[-limit:]
    for letter in shown:
        if as_json:
            typer.echo(msgspec.json.encode(_summary(letter)).decode())
        else:
            typer.echo(
                f"{letter.failed_at.isoformat()}  {letter.stage:<14} {letter.key or '-':<24} "
                f"{letter.event_id or '-':<36}  {letter.reason}"
            )
    if not as_json:
        typer.echo(f"{len(shown)} of {len(letters)} matching dead letters")


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "failed_at": letter.failed_at,
        "stage": letter.stage,
        "device_id": letter.key,
        "event_id": letter.event_id,
        "reason": letter.reason,
        "errors": [
            {"loc": list(e.loc), "message": e.message, "type": e.type} for e in letter.errors
        ],
        "error_type": letter.error_type,
        "source": f"{letter.source_topic}/{letter.partition}/{letter.offset}",
        "item": letter.item,
        "original_bytes": len(letter.original),
    }


@deadletters_app.command("replay")
def replay(
    device: DeviceOpt = None,
    stage: StageOpt = None,
    reason: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show, do not produce")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON report")] = False,
) -> None:
    """Put the readings of the matching dead letters back on the raw topic."""
    settings = get_settings()
    filters = Filters(device, stage, reason, since, until)
    events: list[RawEvent] = []
    skipped: dict[str, int] = defaultdict(int)
    letters = 0
    with operator_errors():
        for letter in read_letters(settings):
            if not filters.match(letter):
                continue
            letters += 1
            found, why = replayable(letter, settings.stream.max_replays)
            if why is not None:
                skipped[why] += 1
            events += found
        records = 0 if dry_run or not events else produce_replays(settings, events)
    report = {
        "letters": letters,
        "readings": len(events),
        "records": records,
        "dry_run": dry_run,
        "skipped": dict(skipped),
    }
    if as_json:
        typer.echo(json.dumps(report))
        return
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {len(events)} readings from {letters} matching dead letters")
    for why, count in skipped.items():
        typer.echo(f"  skipped {count}: {why}")

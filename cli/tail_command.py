"""``fleetstream tail TOPIC``: a topic's records, decoded, one JSON object a line.

Values are decoded generically (:mod:`connectors.kafka.record_decoder`): Confluent-framed Avro
through the registry by the schema id in each frame, JSON, text, else a hex preview. Reads are
bounded: a range (``--from``/``--to``: ``beginning``, ``end``, an offset applied to every
partition, an ISO 8601 time or a duration back from now such as ``15m``) fixed when the command
starts, at most ``--limit`` records (100; 0 for all of the range); ``--follow`` waits for new
records until the limit or Ctrl-C. Nothing joins a group or commits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from confluent_kafka import Message, TopicPartition

# A public name, re-exported by confluent_kafka.admin without __all__ (mypy strict refuses that).
from confluent_kafka.admin._listoffsets import OffsetSpec

from cli.console import fail, operator_errors, say
from connectors.kafka.inspection import Inspector
from connectors.kafka.range_reader import read_following, read_range, tool_consumer
from connectors.kafka.record_decoder import Decoded, RecordDecoder
from connectors.schema_registry import client_for
from schemas.settings import Settings, get_settings

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

_POSITION = "beginning, end, an offset, an ISO 8601 time, or a duration ago (15m)"


def tail(
    topic: Annotated[str, typer.Argument(help="the topic, e.g. fleet.readings.v1")],
    device: Annotated[str | None, typer.Option(help="only records of this device_id")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="wait for new records")] = False,
    start: Annotated[str | None, typer.Option("--from", help=_POSITION)] = None,
    end: Annotated[str | None, typer.Option("--to", help=_POSITION)] = None,
    partition: Annotated[list[int] | None, typer.Option(help="only this partition")] = None,
    limit: Annotated[int, typer.Option(min=0, help="stop after this many (0: no limit)")] = 100,
) -> None:
    """Print the records of TOPIC decoded (default: from the beginning to the current end)."""
    if follow and end is not None:
        raise typer.BadParameter("--follow reads on without end; leave out --to")
    settings = get_settings()
    with operator_errors():
        starts, ends = _range(
            settings,
            topic,
            start or ("end" if follow else "beginning"),
            None if follow else end or "end",
            partition,
        )
        decoder = RecordDecoder(client_for(settings))
        consumer = tool_consumer(settings.kafka.bootstrap_servers, "tail")
        try:
            messages = (
                read_following(consumer, topic, starts)
                if ends is None
                else read_range(consumer, topic, starts, ends)
            )
            _print(messages, decoder, device, limit)
        except KeyboardInterrupt:
            pass
        finally:
            consumer.close()


def _print(
    messages: Iterator[Message], decoder: RecordDecoder, device: str | None, limit: int
) -> None:
    shown = read = 0
    try:
        for message in messages:
            read += 1
            record = _record(message, decoder.decode(message.value()), device)
            if record is None:
                continue
            typer.echo(json.dumps(record, default=_jsonable, ensure_ascii=False))
            shown += 1
            if shown == limit:
                return
    finally:  # on stderr: stdout stays JSON lines
        say(f"{shown:,} records shown of {read:,} read" + (" (--limit)" if shown == limit else ""))


def _range(
    settings: Settings, topic: str, start: str, end: str | None, only: list[int] | None
) -> tuple[dict[int, int], dict[int, int] | None]:
    """Start offsets per partition, and end offsets (exclusive) unless following."""
    inspector = Inspector(settings.kafka.bootstrap_servers)
    [state] = inspector.topics([topic], configs=False)
    partitions = [p for p in state.partitions if only is None or p.partition in only]
    if not partitions:
        fail(f"{topic} has no partition {only}")
    firsts = {p.partition: p.start for p in partitions}
    lasts = {p.partition: p.end for p in partitions}
    starts = _offsets(inspector, topic, start, firsts, lasts, "--from")
    ends = None if end is None else _offsets(inspector, topic, end, firsts, lasts, "--to")
    return starts, ends


def _offsets(
    inspector: Inspector,
    topic: str,
    position: str,
    firsts: dict[int, int],
    lasts: dict[int, int],
    option: str,
) -> dict[int, int]:
    if position == "beginning":
        return dict(firsts)
    if position == "end":
        return dict(lasts)
    if position.isdigit():
        offset = int(position)
        return {p: min(max(offset, firsts[p]), lasts[p]) for p in firsts}
    moment = _moment(position, option)
    spec = OffsetSpec.for_timestamp(int(moment.timestamp() * 1000))
    found = inspector.offsets([TopicPartition(topic, p) for p in firsts], spec)
    # no record at or after the time: the partition's end
    return {p: found[(topic, p)] if found[(topic, p)] >= 0 else lasts[p] for p in firsts}


def _moment(text: str, option: str) -> datetime:
    duration = _DURATION.match(text)
    if duration is not None:
        amount, unit = int(duration[1]), _UNITS[duration[2]]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{option} {text!r}: beginning, end, an offset, an ISO 8601 time or 15m/2h/1d"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _record(message: Message, decoded: Decoded, device: str | None) -> dict[str, Any] | None:
    key = message.key()
    key_text = None if key is None else _key(key)
    value = decoded.value
    if device is not None and key_text != device:
        value = _of_device(value, device)
        if value is None:
            return None
    _, millis = message.timestamp()
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": datetime.fromtimestamp(millis / 1000, UTC).isoformat(),
        "key": key_text,
        "format": decoded.format,
        "schema_id": decoded.schema_id,
        "value": value,
    }


def _of_device(value: Any, device: str) -> Any:
    """``value`` if it is the device's, an envelope cut to the device's items, else None."""
    if not isinstance(value, dict):
        return None
    if value.get("device_id") == device:
        return value
    items = value.get("items")
    if isinstance(items, list):
        mine = [
            item for item in items if isinstance(item, dict) and item.get("device_id") == device
        ]
        if mine:
            return {**value, "items": mine}
    return None


def _key(key: bytes) -> str:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return key.hex()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)  # Decimal, UUID and other logical types

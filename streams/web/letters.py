"""The dead-letter topic followed by the worker's web views: the latest letters, counts per stage.

A daemon thread (as ``connectors.kafka.device_cache``) assigns every partition of
``fleet.deadletter.v1`` — no consumer group, nothing committed — from the last hour, or from
the last :data:`KEEP` letters of the partition if that is earlier, and follows it. It keeps the
:data:`KEEP` newest letters as small summaries (a decoded preview, never the original bytes:
replaying re-reads the letter by its position) and a count per stage per minute for the last
hour. Partitions added later are not followed (the topic is not grown online here).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.kafka.security import client_config
from schemas.contract_wire import decode_dead_letter
from schemas.envelopes import decode_raw_record
from schemas.events import DeadLetter

log = logging.getLogger(__name__)

KEEP = 200
"""Newest letters kept (and read back at start, per partition, when the hour holds fewer)."""
WINDOW_S = 3600
MAX_BACKLOG = 100_000
"""At most this many letters per partition are read at start (a flood is counted from there)."""
PREVIEW_CHARS = 600


@dataclass(frozen=True)
class LetterView:
    """One letter as the views show it; ``partition``/``offset`` locate it on its topic."""

    partition: int
    offset: int
    failed_at: datetime
    stage: str
    reason: str
    device_id: str | None
    event_id: str | None
    errors: list[dict[str, Any]]
    error_type: str
    source: str
    item: int | None
    original_bytes: int
    original_truncated: bool
    preview: str
    replayed: int


def preview(letter: DeadLetter, limit: int = PREVIEW_CHARS) -> tuple[str, int]:
    """The original decoded for a person, and how often its reading was replayed already.

    A raw envelope shows the reading(s) as the device sent them; other JSON shows as JSON;
    text as text; anything else as hex.
    """
    original = letter.original
    record = decode_raw_record(
        original, record_id="preview", record_time=letter.failed_at, format_header=None
    )
    if record.events:
        text = ", ".join(bytes(event.payload).decode("utf-8", "replace") for event in record.events)
        return _cut(text, limit), max(event.replay_count for event in record.events)
    try:
        return _cut(msgspec.json.encode(msgspec.json.decode(original)).decode(), limit), 0
    except msgspec.DecodeError:
        pass
    try:
        text = original.decode("utf-8")
    except UnicodeDecodeError:
        return _cut("hex " + original[: limit // 2].hex(), limit), 0
    return _cut(text, limit), 0


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(letter: DeadLetter, partition: int, offset: int) -> LetterView:
    shown, replayed = preview(letter)
    return LetterView(
        partition=partition,
        offset=offset,
        failed_at=letter.failed_at,
        stage=letter.stage,
        reason=letter.reason,
        device_id=letter.key,
        event_id=letter.event_id,
        errors=[{"loc": list(e.loc), "message": e.message, "type": e.type} for e in letter.errors],
        error_type=letter.error_type,
        source=f"{letter.source_topic}/{letter.partition}/{letter.offset}",
        item=letter.item,
        original_bytes=len(letter.original),
        original_truncated=letter.original_truncated,
        preview=shown,
        replayed=replayed,
    )


@dataclass(frozen=True)
class LetterFilter:
    """Which letters a page or a bulk replay means: every given field must match; ``reason``
    is a case-insensitive part of the reason, ``since``/``until`` bound ``failed_at``."""

    stage: str | None = None
    device_id: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, view: LetterView) -> bool:
        return (
            (self.stage is None or view.stage == self.stage)
            and (self.device_id is None or view.device_id == self.device_id)
            and (self.reason is None or self.reason.casefold() in view.reason.casefold())
            and (self.since is None or view.failed_at >= self.since)
            and (self.until is None or view.failed_at < self.until)
        )


class LetterIndex:
    """The newest letters and the per-minute counts per stage; written by the follower thread,
    read by the views (one lock)."""

    def __init__(self, keep: int = KEEP, window_s: int = WINDOW_S) -> None:
        self.keep = keep
        self._latest: deque[LetterView] = deque(maxlen=keep)
        self._minutes: dict[int, Tally[str]] = {}
        self._window_s = window_s
        self._lock = threading.Lock()

    def add(self, view: LetterView) -> None:
        minute = int(view.failed_at.timestamp() // 60)
        with self._lock:
            self._latest.append(view)
            self._minutes.setdefault(minute, Tally())[view.stage] += 1
            if len(self._minutes) > self._window_s // 60 * 2:
                newest = max(self._minutes)
                for old in [m for m in self._minutes if m <= newest - self._window_s // 60]:
                    del self._minutes[old]

    def latest(
        self, limit: int, stage: str | None = None, device_id: str | None = None
    ) -> list[LetterView]:
        """Newest first, optionally only one stage or device."""
        return self.matching(LetterFilter(stage=stage, device_id=device_id), limit)

    def matching(self, wanted: LetterFilter, limit: int | None = None) -> list[LetterView]:
        """The letters ``wanted`` admits, newest first (at most ``limit``)."""
        with self._lock:
            views = [view for view in self._latest if wanted.admits(view)]
        views.sort(key=lambda view: (view.failed_at, view.partition, view.offset), reverse=True)
        return views if limit is None else views[:limit]

    def per_stage(self, now: float) -> dict[str, int]:
        """Letters per stage that failed within the window before ``now`` (whole minutes)."""
        first = int(now // 60) - self._window_s // 60 + 1
        counts: Tally[str] = Tally()
        with self._lock:
            for minute, stages in self._minutes.items():
                if minute >= first:
                    counts.update(stages)
        return dict(counts)


class LetterFollower:
    """The thread that fills a :class:`LetterIndex` from the topic."""

    def __init__(self, bootstrap_servers: str, topic: str, index: LetterIndex) -> None:
        self.topic = topic
        self.index = index
        self.caught_up = threading.Event()
        self._bootstrap = bootstrap_servers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deadletter-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        consumer = Consumer(
            {
                **client_config(self._bootstrap),
                "group.id": f"fleetstream-ops-deadletters-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        try:
            ends = self._assign(consumer)
            while not self._stop.is_set():
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    log.warning("dead-letter follower: %s", message.error())
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                self._add(message.value() or b"", partition, offset)
                if partition in ends and offset + 1 >= ends[partition]:
                    del ends[partition]
                    if not ends:
                        self.caught_up.set()
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> dict[int, int]:
        """Assign every partition from its start offset; the ends to reach to be caught up."""
        while not self._stop.is_set():
            try:
                starts, ends = self._positions(consumer)
            except KafkaException as exc:
                log.warning("dead-letter follower: %s; retrying", exc)
                self._stop.wait(2.0)
                continue
            consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])
            pending = {p: end for p, end in ends.items() if end > starts[p]}
            if not pending:
                self.caught_up.set()
            return pending
        return {}

    def _positions(self, consumer: Consumer) -> tuple[dict[int, int], dict[int, int]]:
        metadata = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise KafkaException(f"topic {self.topic} is not there")
        since_ms = int((time.time() - WINDOW_S) * 1000)
        asked = [TopicPartition(self.topic, p, since_ms) for p in sorted(metadata.partitions)]
        by_time = {tp.partition: tp.offset for tp in consumer.offsets_for_times(asked, timeout=5)}
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for tp in asked:
            low, high = consumer.get_watermark_offsets(tp, timeout=5)
            hour = by_time.get(tp.partition, -1)
            start = min(high if hour < 0 else hour, max(low, high - KEEP))
            starts[tp.partition] = max(start, high - MAX_BACKLOG, low)
            ends[tp.partition] = high
        return starts, ends

    def _add(self, value: bytes, partition: int, offset: int) -> None:
        try:
            letter = decode_dead_letter(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning(
                "dead-letter follower: %s/%d/%d is no dead letter", self.topic, partition, offset
            )
            return
        self.index.add(summarize(letter, partition, offset))

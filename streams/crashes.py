"""The crash ledger: records that were in an agent's hands when it crashed, counted where every
worker of the group sees them.

An exception that escapes an agent stops the worker without committing (``streams.context``),
so the records it held are delivered again, to a restarted worker or, after a rebalance, to
another one. If one of them *causes* the crash, that is a crash loop that no restart ends. So,
before it exits, the crashing worker adds one to the count of every record it held, on a
compacted topic (``FLEET_TOPICS__CRASHES``; key ``agent|topic|partition|offset``). Every worker
reads the ledger when it starts; an agent that gets a record counted ``CRASH_LIMIT`` times
handles it in isolation: per device or per reading, each part on its own, and the part that
still fails becomes a dead letter (stage, reason, short traceback) while the rest goes on.
The count includes innocent records that shared the crashing batch: in isolation they simply
pass. Blocking (confluent-kafka): the ledger is loaded and written from threads or at exit.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from confluent_kafka import Producer

from connectors.kafka.range_reader import partition_ends, read_range, tool_consumer
from connectors.kafka.security import client_config

log = logging.getLogger(__name__)

CRASH_LIMIT = 3
"""Crashes with a record in hand after which the record is handled in isolation."""
RECORD_TIMEOUT_S = 5.0
"""How long a crashing worker waits for the broker to take its counts before it exits."""


class Located(Protocol):
    """Where a consumed record sits (a Faust message or a sink's record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class Crash(msgspec.Struct, frozen=True):
    """One ledger record: how often ``agent`` crashed holding the record, and the last error."""

    agent: str
    topic: str
    partition: int
    offset: int
    count: int
    error: str


_decode = msgspec.json.Decoder(Crash).decode
_encode = msgspec.json.Encoder().encode


def ledger_key(agent: str, record: Located) -> str:
    return f"{agent}|{record.topic}|{record.partition}|{record.offset}"


@dataclass
class CrashLedger:
    bootstrap_servers: str
    topic: str
    crashes: dict[str, Crash] = field(default_factory=dict)

    def load(self) -> None:
        """Read the whole ledger (blocking); records that do not decode are skipped."""
        consumer = tool_consumer(self.bootstrap_servers, "crash-ledger")
        try:
            ends = partition_ends(consumer, self.topic)
            for message in read_range(consumer, self.topic, {}, ends):
                key = (message.key() or b"").decode("utf-8", "replace")
                value = message.value()
                if value is None:
                    self.crashes.pop(key, None)
                    continue
                try:
                    self.crashes[key] = _decode(value)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        finally:
            consumer.close()
        if self.crashes:
            log.warning("crash ledger: %d records were in hand when a worker crashed", len(self))

    def count(self, agent: str, record: Located) -> int:
        if not self.crashes:  # the usual case: no lookup per record
            return 0
        crash = self.crashes.get(ledger_key(agent, record))
        return 0 if crash is None else crash.count

    def is_poison(self, agent: str, record: Located) -> bool:
        return self.count(agent, record) >= CRASH_LIMIT

    def last_error(self, agent: str, record: Located) -> str:
        crash = self.crashes.get(ledger_key(agent, record))
        return "" if crash is None else crash.error

    def record(self, agent: str, records: Iterable[Located], error: BaseException) -> None:
        """Count one more crash for each of ``records`` (blocking, at most RECORD_TIMEOUT_S):
        called by a worker about to exit."""
        text = short_traceback(error)
        producer = Producer(client_config(self.bootstrap_servers, acks="all"))
        for record in records:
            key = ledger_key(agent, record)
            crash = Crash(agent, record.topic, record.partition, record.offset, 0, text)
            crash = msgspec.structs.replace(crash, count=self.count(agent, record) + 1)
            self.crashes[key] = crash
            producer.produce(self.topic, _encode(crash), key.encode())
        if producer.flush(RECORD_TIMEOUT_S):
            log.error(
                "crash ledger: the broker did not take the counts in %.0f s", RECORD_TIMEOUT_S
            )

    def __len__(self) -> int:
        return len(self.crashes)


def short_traceback(error: BaseException, lines: int = 6) -> str:
    """The error and the last frames of its traceback, for a ledger record or a dead letter."""
    frames = traceback.format_exception(error)
    tail = "".join(frames).strip().splitlines()[-lines:]
    return "\n".join(tail)[:2000]


def in_hand(records: Iterable[Any]) -> list[Located]:
    """The consumed records of ``records`` (Faust events or sink records)."""
    return [getattr(record, "message", record) for record in records]

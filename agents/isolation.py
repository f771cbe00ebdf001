"""Handling a record that crashed workers ``CRASH_LIMIT`` times: part by part, so the part that
fails is dead-lettered alone and the rest goes on (``streams.crashes`` counts the crashes).

A curated envelope mixes readings of many devices; it is bisected: the step runs on each half,
then on each half of a half that fails, down to single readings. Sinks write idempotently and
the stateful agents skip what they already applied (by position), so running a half again
after its other half failed writes nothing twice. Any other record is one part: it is
dead-lettered whole when the step fails on it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from agents.deadletters import dead_letter
from connectors.kafka.producer import Record
from schemas.envelopes import curated_envelope, decode_curated_envelope
from schemas.errors import ValidationFailure
from streams.crashes import CRASH_LIMIT, short_traceback

log = logging.getLogger(__name__)

T = TypeVar("T")


async def bisect(
    run: Callable[[list[T]], Awaitable[None]], parts: list[T]
) -> list[tuple[T, Exception]]:
    """Run ``run`` on ``parts``; where it raises, on each half, down to single parts: the parts
    that fail alone, with their errors (empty when everything went through)."""
    if not parts:
        return []
    try:
        await run(parts)
    except Exception as exc:  # noqa: BLE001 - the point: find the part that raises
        if len(parts) == 1:
            return [(parts[0], exc)]
        middle = len(parts) // 2
        return await bisect(run, parts[:middle]) + await bisect(run, parts[middle:])
    return []


M = TypeVar("M")


def split_curated(message: M) -> list[M]:
    """``message`` as one message per reading when it is a curated envelope (positions kept),
    else as itself."""
    try:
        batch = decode_curated_envelope(getattr(message, "value", None))
    except ValidationFailure:
        return [message]
    positions = batch.positions
    return [
        dataclasses.replace(  # type: ignore[type-var]
            message,
            value=curated_envelope([item], None if positions is None else [positions[index]]),
        )
        for index, item in enumerate(batch.items)
    ]


async def isolate(
    stage: str,
    run: Callable[[list[Any]], Awaitable[None]],
    message: Any,
    error_before: str,
    now: datetime,
) -> list[Record]:
    """Run ``run`` on the parts of poison ``message``; the dead letters of the parts that fail
    alone (their original: that part)."""
    failed = await bisect(run, split_curated(message))
    letters = []
    for part, exc in failed:
        reason = RuntimeError(
            f"crashed the worker {CRASH_LIMIT} times or more, isolated: {short_traceback(exc)}"
            f"\nbefore: {error_before}"
        )
        letters.append(dead_letter(stage, part, reason, now, original=part.value or b""))
    log.warning(
        "%s: record %s/%s/%s crashed workers %d times; isolated: %d part(s) dead-lettered",
        stage, message.topic, message.partition, message.offset, CRASH_LIMIT, len(letters),
    )  # fmt: skip
    return letters


def partition_poison(
    messages: Sequence[M], is_poison: Callable[[M], bool]
) -> tuple[list[M], list[M]]:
    """``messages`` split into (ordinary, poison), each in order."""
    ordinary: list[M] = []
    poison: list[M] = []
    for message in messages:
        (poison if is_poison(message) else ordinary).append(message)
    return ordinary, poison

"""Dead letters for Faust messages that failed at some stage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.events import dead_letter_for, encode_dead_letter


def dead_letter(stage: str, message: Any, error: BaseException, now: datetime) -> bytes:
    """The encoded dead letter for ``message`` (a Faust message) that failed with ``error``."""
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    letter = dead_letter_for(
        error,
        stage=stage,
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        original=message.value if message.value is not None else b"",
        failed_at=now,
    )
    return encode_dead_letter(letter)

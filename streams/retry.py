"""Retry with capped exponential backoff, for work that must not be skipped.

Agents use it around outputs (Kafka sends, Postgres writes) whose failure means "the service is
down": the partition waits, nothing is acked, and the batch goes through once the service is
back. Errors the predicate calls permanent are re-raised for the caller to dead-letter. While
it waits, the agent is listed as waiting (``fleet_agent_waiting``, the worker's ``/ops/`` row).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.metrics import METRICS

T = TypeVar("T")

log = logging.getLogger(__name__)


async def retry_until_done(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    is_retriable: Callable[[BaseException], bool],
    backoff_max_s: float,
    backoff_start_s: float = 0.1,
) -> T:
    delay = backoff_start_s
    attempt = 0
    while True:
        try:
            result = await operation()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            attempt += 1
            METRICS.retried()
            METRICS.waiting(f"{what}: {exc!r}")
            log.warning("%s failed (attempt %d), retrying in %.1fs: %r", what, attempt, delay, exc)
        else:
            if attempt:
                METRICS.resumed()
            return result
        # Backoff between attempts, not a stand-in for waiting on a condition.
        await asyncio.sleep(delay)
        delay = min(delay * 2, backoff_max_s)

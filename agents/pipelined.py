"""Acks in order after publishes that overlap: the next batch is validated while the broker
acks the last one.

Waiting for a batch's acks before taking the next batch is short on an idle worker (~4 ms), but
the ack is a future settled on the event loop, so under load the wait also lasts whatever
synchronous batch another agent runs (status, rollups, Redis merges: tens of ms each): enough
for validate to fall behind with CPU to spare (docs/decisions.md, decision 26).

:class:`InOrderAcks` lets up to ``max_in_flight`` publishes run while the agent goes on, and
acks each batch's events only once its publish *and every earlier one* succeeded, so the
committed offset never passes a batch whose outputs are not in Kafka (decision 1). A publish
that fails for good stops the worker without acking anything after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Ack = Callable[[Any], Awaitable[Any]]
OnFailure = Callable[[BaseException], None]


class InOrderAcks:
    """Publishes in flight, acked in the order they were submitted."""

    def __init__(self, ack: Ack, on_failure: OnFailure, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._ack = ack
        self._on_failure = on_failure
        self._pending: asyncio.Queue[tuple[asyncio.Task[None], Sequence[Any]]] = asyncio.Queue(
            max_in_flight
        )
        self._acker: asyncio.Task[None] | None = None

    async def submit(self, publish: Awaitable[None], events: Sequence[Any]) -> None:
        """Start ``publish``; ``events`` are acked once it and every earlier one succeeded.

        Waits while ``max_in_flight`` publishes are unacked (backpressure on the agent)."""
        if self._acker is None:
            self._acker = asyncio.create_task(self._ack_in_order())
        task = asyncio.ensure_future(publish)
        await self._pending.put((task, events))

    async def drain(self) -> None:
        """Wait until everything submitted so far is acked (tests, shutdown)."""
        await self._pending.join()

    async def close(self) -> None:
        """Stop acking; publishes still in flight stay unacked (they are redelivered)."""
        if self._acker is not None:
            self._acker.cancel()
            await asyncio.gather(self._acker, return_exceptions=True)
        while not self._pending.empty():
            task, _ = self._pending.get_nowait()
            task.cancel()

    async def _ack_in_order(self) -> None:
        while True:
            task, events = await self._pending.get()
            try:
                await task
                for event in events:
                    await self._ack(event)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - nothing after it may be acked
                self._on_failure(exc)
                return
            finally:
                self._pending.task_done()

"""InOrderAcks: publishes overlap, acks never pass a batch whose outputs are not acked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agents.pipelined import InOrderAcks


class Recorder:
    def __init__(self) -> None:
        self.acked: list[str] = []
        self.failures: list[BaseException] = []

    async def ack(self, event: str) -> None:
        self.acked.append(event)

    def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)


async def _publish(done: asyncio.Event, error: Exception | None = None) -> None:
    await done.wait()
    if error is not None:
        raise error


async def test_a_later_publish_that_finishes_first_waits_for_the_earlier_ack() -> None:
    seen = Recorder()
    acks = InOrderAcks(seen.ack, seen.fail, max_in_flight=4)
    first, second = asyncio.Event(), asyncio.Event()
    await acks.submit(_publish(first), ["a1", "a2"])
    await acks.submit(_publish(second), ["b1"])
    second.set()
    await _let_run()  # the acker had every chance: nothing may be acked yet
    assert seen.acked == []
    first.set()
    await asyncio.wait_for(acks.drain(), 1)
    assert seen.acked == ["a1", "a2", "b1"]
    await acks.close()


async def test_a_failed_publish_acks_nothing_after_it_and_reports_the_error() -> None:
    seen = Recorder()
    acks = InOrderAcks(seen.ack, seen.fail, max_in_flight=4)
    ok, broken, later = asyncio.Event(), asyncio.Event(), asyncio.Event()
    error = RuntimeError("broker refused")
    await acks.submit(_publish(ok), ["a"])
    await acks.submit(_publish(broken, error), ["b"])
    await acks.submit(_publish(later), ["c"])
    for event in (later, ok, broken):
        event.set()
    await asyncio.wait_for(_until(lambda: bool(seen.failures)), 1)
    await _let_run()
    assert seen.acked == ["a"]
    assert seen.failures == [error]
    await acks.close()


async def test_submit_waits_while_max_in_flight_publishes_are_unacked() -> None:
    seen = Recorder()
    acks = InOrderAcks(seen.ack, seen.fail, max_in_flight=1)
    gates = [asyncio.Event() for _ in range(3)]
    await acks.submit(_publish(gates[0]), ["a"])
    await _let_run()  # the acker has taken "a" and waits for its publish
    await acks.submit(_publish(gates[1]), ["b"])
    third = asyncio.create_task(acks.submit(_publish(gates[2]), ["c"]))
    await _let_run()
    assert not third.done()
    gates[0].set()
    await asyncio.wait_for(third, 1)
    for gate in gates:
        gate.set()
    await asyncio.wait_for(acks.drain(), 1)
    assert seen.acked == ["a", "b", "c"]
    await acks.close()


async def test_close_cancels_publishes_in_flight_without_acking_them() -> None:
    seen = Recorder()
    acks = InOrderAcks(seen.ack, seen.fail, max_in_flight=2)
    never = asyncio.Event()
    publish = asyncio.ensure_future(_publish(never))
    await acks.submit(publish, ["a"])
    await acks.close()
    await asyncio.sleep(0)
    assert publish.cancelled()
    assert seen.acked == []
    assert seen.failures == []


def test_at_least_one_publish_must_be_allowed_in_flight() -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="at least 1"):
        InOrderAcks(recorder.ack, recorder.fail, max_in_flight=0)


async def _let_run(rounds: int = 50) -> None:
    """Give every ready task ``rounds`` turns of the event loop (no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def _until(condition: Callable[[], bool], rounds: int = 1000) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")

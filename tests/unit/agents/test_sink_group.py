"""The sink group's assignment callback (it looks for retention gaps, and raises nothing) and
its watchdog on a poll that never returns."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from agents.sink_group import PollLost, SinkGroup
from schemas.settings import Settings


class BrokersAway:
    """A consumer whose broker calls fail, as while a killed broker is being fenced."""

    def committed(self, partitions: list[TopicPartition], timeout: float) -> Any:
        raise KafkaException(KafkaError(KafkaError._DESTROY_BROKER, "broker handle destroyed"))


class OneGap:
    def committed(self, partitions: list[TopicPartition], timeout: float) -> Any:
        return [TopicPartition("t", 0, 5), TopicPartition("t", 1, -1001)]

    def get_watermark_offsets(self, where: TopicPartition, timeout: float) -> tuple[int, int]:
        return (9, 20)


def test_an_assignment_while_brokers_are_away_reports_no_gap_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = SinkGroup(Settings(), "redis", ["t"], batch_max=10)
    assert group._gaps_of(BrokersAway(), [TopicPartition("t", 0)]) == []  # type: ignore[arg-type]
    assert "retention gaps not checked" in caplog.text


def test_a_committed_offset_below_the_log_start_is_a_gap() -> None:
    group = SinkGroup(Settings(), "redis", ["t"], batch_max=10)
    (gap,) = group._gaps_of(OneGap(), [TopicPartition("t", 0), TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert (gap.topic, gap.partition) == ("t", 0)


class Unconnected:
    """A consumer that talks to no broker (a real one, never closed, would leave librdkafka
    threads behind the test)."""

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        return None

    def close(self) -> None:
        raise AssertionError("a consumer whose poll is lost is not closed under it")


class LostPoll(SinkGroup):
    """A poll whose thread never comes back (as one killed inside a librdkafka callback)."""

    def new_consumer(self) -> Any:
        return Unconnected()

    def __init__(self) -> None:
        super().__init__(Settings(), "redis", ["t"], batch_max=10)
        self.release = threading.Event()
        self.handled: list[Any] = []

    def take(self, consumer: Any) -> list[Any]:
        self.release.wait()
        return []


async def test_a_poll_that_never_returns_stops_the_sink_instead_of_waiting_for_good() -> None:
    group = LostPoll()
    group.poll_watchdog_s = 0.2

    async def handle(messages: list[Any]) -> None:
        group.handled.append(messages)

    try:
        with pytest.raises(PollLost, match="has not returned"):
            await group.run(handle)
    finally:
        group.release.set()  # let the executor thread end with the test
    assert group.handled == []

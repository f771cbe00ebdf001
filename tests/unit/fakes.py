"""Test doubles shared by the unit tests."""

from __future__ import annotations

import asyncio
from typing import Any


class FakeKafkaProducer:
    """Records what an agent publishes; every send is acked at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def values(self, topic: str) -> list[bytes]:
        return [value or b"" for sent_to, _, value in self.sent if sent_to == topic]

    def keys(self, topic: str) -> list[bytes | None]:
        return [key for sent_to, key, _ in self.sent if sent_to == topic]

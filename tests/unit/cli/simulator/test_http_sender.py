"""What the HTTP sender counts: acks, errors by status, retries with the same body after
429/503 and broken connections, never after 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.simulator.http_client import Answer, HttpBroken
from cli.simulator.http_sender import (
    BATCH_ROUTE,
    MAX_RETRY_AFTER_S,
    SINGLE_ROUTE,
    HttpSender,
    Outgoing,
    retry_after,
)
from cli.simulator.tally import Tally


class ScriptedPool:
    """Answers posts from a script (an Answer, or an exception to raise); records them."""

    def __init__(self, script: list[Answer | Exception]) -> None:
        self._script: Iterator[Answer | Exception] = iter(script)
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.posts.append((path, body, headers))
        step = next(self._script)
        if isinstance(step, Exception):
            raise step
        return step


def _answer(status: int, retry: str | None = None) -> Answer:
    headers = {"retry-after": retry} if retry is not None else {}
    return Answer(status, headers, b"", sent_at=1000.0, seconds=0.02)


ITEMS = [Outgoing("d", f"e{n}", b'{"n": %d}' % n, bad=n == 2) for n in range(3)]


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instantly(_seconds: float) -> None:
        return None

    monkeypatch.setattr("cli.simulator.http_sender.asyncio.sleep", instantly)


async def test_one_reading_per_request_goes_to_the_firmware_route_with_the_token() -> None:
    pool, tally = ScriptedPool([_answer(202)]), Tally()
    await HttpSender(pool, tally, retries=2).send("tok", ITEMS[:1], batch=False)  # type: ignore[arg-type]
    headers = {"X-API-Key": "tok", "Content-Type": "application/json"}
    assert pool.posts == [(SINGLE_ROUTE, b'{"n": 0}', headers)]
    assert (tally.sent, tally.acked, tally.failed) == (1, 1, 0)
    assert tally.acked_readings[0].ack_s == 0.02


async def test_a_batch_is_one_array_acked_or_refused_whole() -> None:
    pool, tally = ScriptedPool([_answer(422)]), Tally()
    await HttpSender(pool, tally, retries=2).send("tok", ITEMS, batch=True)  # type: ignore[arg-type]
    assert [(path, body) for path, body, _ in pool.posts] == [
        (BATCH_ROUTE, b'[{"n": 0},{"n": 1},{"n": 2}]')
    ]  # a 422 is not retried
    assert (tally.sent, tally.bad_sent, tally.acked, tally.failed) == (3, 1, 0, 3)
    assert tally.errors == {"http 422": 3}


async def test_503_and_broken_connections_are_retried_with_the_same_body() -> None:
    pool = ScriptedPool([_answer(503, "2"), HttpBroken("reset"), _answer(202)])
    tally = Tally()
    await HttpSender(pool, tally, retries=2).send("tok", ITEMS[:2], batch=True)  # type: ignore[arg-type]
    assert len({body for _, body, _ in pool.posts}) == 1 and len(pool.posts) == 3
    assert tally.errors == {"http 503": 2, "transport": 2}
    assert (tally.sent, tally.acked, tally.failed) == (2, 2, 0)


async def test_out_of_retries_the_readings_fail() -> None:
    pool, tally = ScriptedPool([_answer(429, "1")] * 3), Tally()
    await HttpSender(pool, tally, retries=2).send("tok", ITEMS[:1], batch=False)  # type: ignore[arg-type]
    assert len(pool.posts) == 3
    assert tally.errors == {"http 429": 3}
    assert (tally.acked, tally.failed) == (0, 1)


def test_retry_after_is_read_in_seconds_and_capped() -> None:
    assert retry_after("2") == 2.0
    assert retry_after(None) == 1.0
    assert retry_after("Wed, 21 Oct 2026 07:28:00 GMT") == 1.0
    assert retry_after("3600") == MAX_RETRY_AFTER_S

"""The Redis sink's commands for a merged batch."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from connectors.redis.keys import RedisKeys
from connectors.redis.wire import RedisPipe
from connectors.redis.writer import (
    APPLY_TRANSITION,
    DeviceReadings,
    RedisBatch,
    RedisWriter,
    connect_commands,
)
from tests.factories import status_change

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def writer(legacy: str = "") -> RedisWriter:
    return RedisWriter(RedisPipe("127.0.0.1", 1), RedisKeys("p"), legacy, 100)


def device(device_id: str, *items: bytes) -> DeviceReadings:
    return DeviceReadings(
        device_id,
        latest={"event_id": "e", "reading": items[-1]},
        status={"last_seen": "t", "v:pir.motion_detected": b"true"},
        items=list(items),
    )


def test_three_commands_a_device_and_the_all_devices_feed_once() -> None:
    batch = RedisBatch({"a": device("a", b"{1}", b"{2}"), "b": device("b", b"{3}")})
    commands = writer().commands(batch)
    assert commands == [
        ("HSET", "p:device:a:latest", "event_id", "e", "reading", b"{2}"),
        ("HSET", "p:device:a:status", "last_seen", "t", "v:pir.motion_detected", b"true"),
        ("PUBLISH", "p:readings:a", b'{"device_id":"a","readings":[{1},{2}]}'),
        ("HSET", "p:device:b:latest", "event_id", "e", "reading", b"{3}"),
        ("HSET", "p:device:b:status", "last_seen", "t", "v:pir.motion_detected", b"true"),
        ("PUBLISH", "p:readings:b", b'{"device_id":"b","readings":[{3}]}'),
        ("PUBLISH", "p:readings", b'{"readings":[{1},{2},{3}]}'),
    ]


def test_the_legacy_list_gets_every_reading_then_its_cap() -> None:
    commands = writer("legacy").commands(RedisBatch({"a": device("a", b"{1}", b"{2}")}))
    assert commands[-2:] == [("LPUSH", "legacy", b"{1}", b"{2}"), ("LTRIM", "legacy", 0, 99)]


def test_a_transition_calls_the_script_loaded_on_connecting_by_its_sha() -> None:
    change = status_change("a", 4, NOW)
    (command,) = writer().commands(RedisBatch(changes=[(change, b"{change}")]))
    sha = hashlib.sha1(APPLY_TRANSITION.encode(), usedforsecurity=False).hexdigest()
    assert command == (
        "EVALSHA",
        sha,
        3,
        "p:device:a:status",
        "p:status:a",
        "p:status",
        4,
        "a",
        "0",
        NOW.isoformat(),
        "timeout",
        b"{change}",
    )
    assert connect_commands(3) == [("SELECT", 3), ("SCRIPT", "LOAD", APPLY_TRANSITION)]


def test_a_deleted_device_loses_both_hashes_after_whatever_the_batch_wrote() -> None:
    change = status_change("a", 5, NOW)
    batch = RedisBatch({"a": device("a", b"{1}")}, changes=[(change, b"{c}")], deleted=["a"])
    commands = writer().commands(batch)
    assert [c[0] for c in commands] == ["HSET", "HSET", "PUBLISH", "PUBLISH", "EVALSHA", "DEL"]
    assert commands[-1] == ("DEL", "p:device:a:status", "p:device:a:latest")


async def test_an_empty_batch_sends_nothing() -> None:
    await writer().write(RedisBatch())  # port 1: any command would fail to connect

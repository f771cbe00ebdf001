"""The in-process MQTT front benchmark still drives a real connection to the end (it broke
once when the connection began asking its writer for the peer and certificate)."""

from __future__ import annotations

from bench.mqtt_front_path import _once, session


async def test_every_publish_of_the_session_is_acked_and_timed() -> None:
    assert await _once(session(200), messages=200) > 0

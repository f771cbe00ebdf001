"""Faust handles on the topics agents consume. Values stay bytes: ``schemas`` owns the codecs.

Agents publish by topic name through the worker's producer (``agents.outputs``), so only the
topics something consumes need a handle here.
"""

from __future__ import annotations

from typing import Any

from streams.app import app, settings


def _bytes_topic(name: str) -> Any:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


raw_topic = _bytes_topic(settings.topics.raw)
readings_topic = _bytes_topic(settings.topics.readings)

"""Faust handles on the topics agents consume. Values stay bytes: ``schemas`` owns the codecs.

Agents publish through the worker's confluent-kafka producer (``streams.context``), so only the
topics something consumes need a handle here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from schemas.settings import Settings


def bytes_topic(app: faust.App, name: str) -> Any:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


@dataclass(frozen=True)
class SourceTopics:
    raw: Any
    curated: Any

    @classmethod
    def of(cls, app: faust.App, settings: Settings) -> SourceTopics:
        topics = settings.topics
        return cls(raw=bytes_topic(app, topics.raw), curated=bytes_topic(app, topics.curated))

"""Faust handles on the project's topics. Values stay bytes: ``schemas`` owns the codecs."""

from __future__ import annotations

from streams.app import app, settings

raw_topic = app.topic(
    settings.topics.raw,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
readings_topic = app.topic(
    settings.topics.readings,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
deadletter_topic = app.topic(
    settings.topics.deadletter,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)

"""The ``fleet.media.v1`` contract: one event per stored media object (key: device_id).

The bytes stay in the blob store; the event says where (``storage`` + ``object_key``), what
(``kind``, ``content_type``, ``size_bytes``, ``sha256``), whose (``device_id``) and when
(``captured_at``: the audio chunk's start or the frame's capture time; ``ended_at``: the audio
chunk's end; ``received_at``: when the edge took it). ``metadata`` carries the kind's own
fields: for audio ``point_id``, ``register_id``, ``codec``, ``sample_rate``, ``channels``,
``duration_sec``; for images the request's ``meta`` and ``original_filename``.

An event is produced only after the object is durable and its row is committed, with
``acks=all``, before the client gets its 2xx; a retried request may produce it again with the
same ``event_id`` (the chunk or frame id), so consumers dedupe on ``event_id``.

Hook for the stream core: a consumer of this topic can treat an event as "device seen at
``received_at``" (device status, last seen) and hand it to flows as an event of kind ``media``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

SCHEMA_VERSION = 1
MediaKind = Literal["audio_chunk", "image"]
MediaSource = Literal["upload", "rtsp"]
Storage = Literal["filesystem", "s3"]


class MediaEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    device_id: str
    kind: MediaKind
    source: MediaSource
    storage: Storage
    object_key: str
    content_type: str
    size_bytes: int
    sha256: str
    captured_at: datetime
    received_at: datetime
    ended_at: datetime | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = {}
    schema_version: int = SCHEMA_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MediaEvent)


def encode_media_event(event: MediaEvent) -> bytes:
    return _encoder.encode(event)


def decode_media_event(data: bytes) -> MediaEvent:
    """Unknown fields are ignored, so newer producers may add optional ones."""
    return _decoder.decode(data)

"""Object keys of media: where each kind of object lives in the blob store.

Audio chunks keep seed 004's layout, frames an equivalent one per camera::

    audio/<point_id>/<register_id>/<YYYY-MM-DD>/<HH>/chunk_<start_ts>_<chunk_id>.<ext>
    frames/<camera_id>/<YYYY-MM-DD>/<HH>/frame_<captured_ts>_<frame_id>.<ext>

Dates and hours are UTC; ``<start_ts>`` is compact ISO 8601 (``20260128T100000Z``, with
``.123456`` before the Z when it has microseconds), which sorts by time and holds no ':' (a
problem for some file systems and tools). Every key passes :func:`check_key`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from connectors.blob.base import check_key


def compact_ts(ts: datetime) -> str:
    utc = ts.astimezone(UTC)
    text = utc.strftime("%Y%m%dT%H%M%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def _day_hour(ts: datetime) -> str:
    utc = ts.astimezone(UTC)
    return f"{utc:%Y-%m-%d}/{utc:%H}"


def audio_chunk_key(
    point_id: uuid.UUID,
    register_id: uuid.UUID,
    start_ts: datetime,
    chunk_id: uuid.UUID,
    ext: str,
) -> str:
    name = f"chunk_{compact_ts(start_ts)}_{chunk_id}.{ext}"
    return check_key(f"audio/{point_id}/{register_id}/{_day_hour(start_ts)}/{name}")


def frame_key(camera_id: str, captured_at: datetime, frame_id: uuid.UUID, ext: str) -> str:
    name = f"frame_{compact_ts(captured_at)}_{frame_id}.{ext}"
    return check_key(f"frames/{camera_id}/{_day_hour(captured_at)}/{name}")

"""Object keys: seed 004's audio layout and the frames layout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from connectors.blob.layout import audio_chunk_key, compact_ts, frame_key

POINT = uuid.UUID("11111111-1111-4111-8111-111111111111")
REGISTER = uuid.UUID("22222222-2222-4222-8222-222222222222")
CHUNK = uuid.UUID("33333333-3333-4333-8333-333333333333")


def test_audio_chunk_key_follows_seed_004() -> None:
    start = datetime(2026, 1, 28, 10, 5, 7, tzinfo=UTC)
    key = audio_chunk_key(POINT, REGISTER, start, CHUNK, "ogg")
    assert key == (f"audio/{POINT}/{REGISTER}/2026-01-28/10/chunk_20260128T100507Z_{CHUNK}.ogg")


def test_dates_and_hours_are_utc_whatever_the_offset_sent() -> None:
    start = datetime(2026, 1, 29, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    key = audio_chunk_key(POINT, REGISTER, start, CHUNK, "ogg")
    assert f"/2026-01-28/22/chunk_20260128T223000Z_{CHUNK}.ogg" in key


def test_compact_ts_keeps_microseconds_and_sorts_by_time() -> None:
    early = datetime(2026, 1, 28, 10, 0, 0, 5, tzinfo=UTC)
    late = datetime(2026, 1, 28, 10, 0, 1, tzinfo=UTC)
    assert compact_ts(early) == "20260128T100000.000005Z"
    assert compact_ts(early) < compact_ts(late)


def test_frame_key_is_per_camera_and_hour() -> None:
    frame = uuid.UUID("44444444-4444-4444-8444-444444444444")
    at = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)
    assert frame_key("Haas_Pit_1", at, frame, "jpg") == (
        f"frames/Haas_Pit_1/2026-11-28/23/frame_20261128T235959Z_{frame}.jpg"
    )

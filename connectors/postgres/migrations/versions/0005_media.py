"""Media: audio chunks (seed 004), camera frame requests and frames (seed 003).

``audio_chunks`` has seed 004's columns plus what fleetstream adds: ``sha256`` of the stored
bytes, ``content_type``, ``storage`` (the blob backend that holds ``file_path``) and
``updated_at``. Its indexes are seed 004's: ``(point_id, start_ts)``, and ``(device_id,
start_ts)`` made unique with ``sha256`` appended, which is what makes a repeated upload of the
same chunk idempotent (same device, start and bytes → the same row). ``status`` moves UPLOADED
(row written after the bytes are durable) → QUEUED (its ``fleet.media.v1`` event was acked) →
PROCESSING → DONE / ERROR (set by whoever processes chunks). There is no foreign key to
``devices``: deleting a device must not fail on, or delete, the media it sent.

``media_requests`` is one seed 003 request (an upload or an RTSP capture) and its status, so
``GET /api/v1/ingest/status/{request_id}`` answers from any API instance; ``media_frames`` are
the images it stored. ``deadline_at`` lets a reader see a capture whose instance died.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE TABLE audio_chunks (
            chunk_id         uuid         PRIMARY KEY,
            device_id        text         NOT NULL,
            point_id         uuid         NOT NULL,
            register_id      uuid         NOT NULL,
            start_ts         timestamptz  NOT NULL,
            end_ts           timestamptz  NOT NULL CHECK (end_ts > start_ts),
            duration_sec     integer      NOT NULL CHECK (duration_sec >= 0),
            codec            varchar(32)  NOT NULL,
            sample_rate      integer      NOT NULL CHECK (sample_rate > 0),
            channels         integer      NOT NULL CHECK (channels > 0),
            file_path        text         NOT NULL,
            file_size_bytes  bigint       NOT NULL CHECK (file_size_bytes >= 0),
            sha256           text         NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            content_type     text         NOT NULL,
            storage          text         NOT NULL CHECK (storage IN ('filesystem', 's3')),
            status           varchar(32)  NOT NULL DEFAULT 'UPLOADED'
                CHECK (status IN ('UPLOADED', 'QUEUED', 'PROCESSING', 'DONE', 'ERROR')),
            created_at       timestamptz  NOT NULL DEFAULT now(),
            updated_at       timestamptz  NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX audio_chunks_point_start ON audio_chunks (point_id, start_ts)")
    op.execute(
        "CREATE UNIQUE INDEX audio_chunks_device_start ON audio_chunks (device_id, start_ts, sha256)"
    )
    op.execute(
        r"""
        CREATE TABLE media_requests (
            request_id        uuid         PRIMARY KEY,
            device_id         text         NOT NULL,
            source_type       text         NOT NULL CHECK (source_type IN ('upload', 'rtsp')),
            status            text         NOT NULL
                CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
            source            text,
            capture_mode      text,
            frames_requested  integer      NOT NULL CHECK (frames_requested >= 0),
            frames_stored     integer      NOT NULL DEFAULT 0 CHECK (frames_stored >= 0),
            fps               double precision,
            meta              jsonb        NOT NULL DEFAULT '{}'::jsonb,
            error             text,
            deadline_at       timestamptz,
            created_at        timestamptz  NOT NULL DEFAULT now(),
            updated_at        timestamptz  NOT NULL DEFAULT now(),
            completed_at      timestamptz
        )
        """
    )
    op.execute("CREATE INDEX media_requests_device ON media_requests (device_id, created_at)")
    op.execute(
        r"""
        CREATE TABLE media_frames (
            frame_id           uuid         PRIMARY KEY,
            request_id         uuid         NOT NULL
                REFERENCES media_requests (request_id) ON DELETE CASCADE,
            seq                integer      NOT NULL CHECK (seq >= 0),
            device_id          text         NOT NULL,
            object_key         text         NOT NULL,
            storage            text         NOT NULL CHECK (storage IN ('filesystem', 's3')),
            content_type       text         NOT NULL,
            size_bytes         bigint       NOT NULL CHECK (size_bytes >= 0),
            sha256             text         NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            captured_at        timestamptz  NOT NULL,
            original_filename  text,
            created_at         timestamptz  NOT NULL DEFAULT now(),
            UNIQUE (request_id, seq)
        )
        """
    )
    op.execute("CREATE INDEX media_frames_device ON media_frames (device_id, captured_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS media_frames")
    op.execute("DROP TABLE IF EXISTS media_requests")
    op.execute("DROP TABLE IF EXISTS audio_chunks")

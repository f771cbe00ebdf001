"""Devices: the registry's system of record (seed 004's table plus seed 002's metadata).

The token is stored only as its SHA-256 hex (unique: a token names one device). Indexes serve the
admin list filters: device_id and lower(name) prefixes (text_pattern_ops, so LIKE 'abc%' uses
them whatever the collation), profile, tags (GIN, for ``tags @> ARRAY[...]``) and the few
disabled devices (partial index).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE TABLE devices (
            device_id             text        PRIMARY KEY
                CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
            name                  text,
            profile               text,
            tags                  text[]      NOT NULL DEFAULT '{}',
            metadata              jsonb       NOT NULL DEFAULT '{}'::jsonb,
            is_enabled            boolean     NOT NULL DEFAULT true,
            token_hash            text        NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$'),
            inactivity_timeout_s  integer     CHECK (inactivity_timeout_s > 0),
            created_at            timestamptz NOT NULL DEFAULT now(),
            updated_at            timestamptz NOT NULL DEFAULT now(),
            last_seen_at          timestamptz
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX devices_token_hash ON devices (token_hash)")
    op.execute("CREATE INDEX devices_id_prefix ON devices (device_id text_pattern_ops)")
    op.execute("CREATE INDEX devices_name_prefix ON devices (lower(name) text_pattern_ops)")
    op.execute("CREATE INDEX devices_profile ON devices (profile, device_id)")
    op.execute("CREATE INDEX devices_tags ON devices USING gin (tags)")
    op.execute("CREATE INDEX devices_disabled ON devices (device_id) WHERE NOT is_enabled")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS devices")

"""Stream core: 1-minute rollups per device and sensor field.

``readings_1m`` holds the rollup agent's windows (``fleet.readings-1m.v1``): one row per device,
field ("sensor.field") and window start, upserted with the window's whole aggregate so far. An
upsert only ever raises ``count``, so a redelivered older record cannot overwrite a newer one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE readings_1m (
            device_id text NOT NULL,
            field text NOT NULL,
            window_start timestamptz NOT NULL,
            window_end timestamptz NOT NULL,
            count bigint NOT NULL CHECK (count > 0),
            min double precision NOT NULL,
            max double precision NOT NULL,
            sum double precision NOT NULL,
            mean double precision NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (device_id, field, window_start)
        )
        """
    )
    op.execute("CREATE INDEX readings_1m_window ON readings_1m (window_start)")


def downgrade() -> None:
    op.execute("DROP TABLE readings_1m")

"""Event ids are scoped to their device: the readings key becomes (device_id, event_id, ts).

With (event_id, ts) alone, a device that reused another device's event id and timestamp had its
reading dropped by the sink's ``ON CONFLICT DO NOTHING``: any device could suppress another's
readings. Now only a device's own repeat is a duplicate. Postgres requires the partition key
(ts) in every unique index; the constraint is changed on the partitioned table and Postgres
changes it on every partition.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE readings DROP CONSTRAINT readings_pkey")
    op.execute("ALTER TABLE readings ADD PRIMARY KEY (device_id, event_id, ts)")


def downgrade() -> None:
    # Fails while two devices hold one (event_id, ts): those rows must be resolved by hand.
    op.execute("ALTER TABLE readings DROP CONSTRAINT readings_pkey")
    op.execute("ALTER TABLE readings ADD PRIMARY KEY (event_id, ts)")

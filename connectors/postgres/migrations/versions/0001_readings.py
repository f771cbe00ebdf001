"""Readings: one row per accepted reading, partitioned by day on the reading's timestamp.

The primary key (event_id, ts) makes the sink idempotent: a replayed event has the same id and
the same timestamp, so ``ON CONFLICT DO NOTHING`` drops it. Postgres requires the partition key
in every unique index, hence ts in the key. Partitions are created on demand by
``fleet_ensure_readings_partition`` (the sink calls it for each new day it sees), so a device
with a skewed clock never makes an insert fail.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE readings (
            event_id      uuid        NOT NULL,
            device_id     text        NOT NULL,
            ts            timestamptz NOT NULL,
            received_at   timestamptz NOT NULL,
            source        text        NOT NULL,
            sensor_types  text[]      NOT NULL,
            sensors       jsonb       NOT NULL,
            metadata      jsonb,
            ingested_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (event_id, ts)
        ) PARTITION BY RANGE (ts)
        """
    )
    op.execute("CREATE INDEX readings_device_ts ON readings (device_id, ts DESC)")
    op.execute("CREATE INDEX readings_sensor_types ON readings USING gin (sensor_types)")
    op.execute(
        """
        CREATE FUNCTION fleet_ensure_readings_partition(day date) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            part text := format('readings_%s', to_char(day, 'YYYYMMDD'));
        BEGIN
            IF to_regclass(part) IS NOT NULL THEN
                RETURN;
            END IF;
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                part,
                day::timestamp AT TIME ZONE 'UTC',
                (day + 1)::timestamp AT TIME ZONE 'UTC'
            );
        EXCEPTION
            -- Two workers racing on the same new day: the loser finds the table made.
            WHEN duplicate_table OR unique_violation THEN
                NULL;
        END;
        $$
        """
    )
    # Today and the next week exist from the start, so the first inserts need no DDL.
    op.execute(
        "SELECT fleet_ensure_readings_partition(d::date) FROM "
        "generate_series(current_date - 1, current_date + 7, interval '1 day') AS d"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS readings CASCADE")
    op.execute("DROP FUNCTION IF EXISTS fleet_ensure_readings_partition(date)")

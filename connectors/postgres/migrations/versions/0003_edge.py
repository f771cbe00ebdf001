"""The edge no longer makes partitions: a DEFAULT partition, and day partitions made ahead.

Until now the sink created the partition of every day it saw, so a request carrying readings
spread over 1,000 days made the database create ~1,000 tables under an exclusive lock. From here
on day partitions are created only by a scheduled job (``agents/maintenance.py``) and by
``fleetstream db partitions``; a reading whose day has no partition lands in ``readings_default``.

``fleet_ensure_readings_partition(day)`` now returns whether it created the partition, and when
rows of that day already sit in the DEFAULT partition it moves them into the new one (Postgres
refuses to create a partition whose range the DEFAULT partition holds rows of). It locks
``readings`` first, so a concurrent insert cannot slip a row of that day into the DEFAULT
partition between the move and the attach.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ENSURE = """
CREATE FUNCTION fleet_ensure_readings_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('readings_%s', to_char(day, 'YYYYMMDD'));
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE readings IN ACCESS EXCLUSIVE MODE;
    IF to_regclass(part) IS NOT NULL THEN  -- made while we waited for the lock
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM readings_default WHERE ts >= lo AND ts < hi) THEN
        EXECUTE format('CREATE TABLE %I (LIKE readings INCLUDING DEFAULTS)', part);
        EXECUTE format(
            'WITH moved AS (DELETE FROM readings_default WHERE ts >= $1 AND ts < $2 RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved',
            part
        ) USING lo, hi;
        EXECUTE format(
            'ALTER TABLE readings ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi
        );
    ELSE
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)', part, lo, hi
        );
    END IF;
    RETURN true;
EXCEPTION
    WHEN duplicate_table THEN
        RETURN false;
END;
$$
"""

_ENSURE_0001 = """
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
    WHEN duplicate_table OR unique_violation THEN
        NULL;
END;
$$
"""


def upgrade() -> None:
    op.execute("CREATE TABLE readings_default PARTITION OF readings DEFAULT")
    op.execute("DROP FUNCTION fleet_ensure_readings_partition(date)")
    op.execute(_ENSURE)
    # Not 0001's statement text: asyncpg would reuse its plan, made for the old function.
    op.execute(
        "SELECT count(*) FILTER (WHERE fleet_ensure_readings_partition(d::date)) FROM "
        "generate_series(current_date - 1, current_date + 7, interval '1 day') AS d"
    )


def downgrade() -> None:
    # Give every day held by the DEFAULT partition its own partition, then drop it.
    op.execute(
        "SELECT count(*) FILTER (WHERE fleet_ensure_readings_partition(d)) FROM "
        "(SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS d FROM readings_default) AS days"
    )
    op.execute("DROP TABLE readings_default")
    op.execute("DROP FUNCTION fleet_ensure_readings_partition(date)")
    op.execute(_ENSURE_0001)

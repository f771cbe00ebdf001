"""Flows and alerts: the flow registry's system of record and the alerts the rules raised.

``flows`` holds each flow's current version (published to ``fleet.flows.v1``); every version
ever stored stays in ``flow_versions`` (the API's ``?version=N``). ``alerts`` holds one row per
alert episode (``alert_id`` from ``fleet.alerts.v1``): inserted when it fires, ``cleared_at``
set when it clears, ``acknowledged_at``/``acknowledged_by`` set by an operator. Indexes serve
the ``/api/v1/alerts`` filters (device, rule, open alerts, newest first).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE TABLE flows (
            flow_id     text        PRIMARY KEY CHECK (flow_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
            name        text        NOT NULL,
            version     integer     NOT NULL CHECK (version > 0),
            enabled     boolean     NOT NULL DEFAULT true,
            definition  jsonb       NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE flow_versions (
            flow_id     text        NOT NULL REFERENCES flows (flow_id) ON DELETE CASCADE,
            version     integer     NOT NULL,
            definition  jsonb       NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (flow_id, version)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alerts (
            alert_id         uuid        PRIMARY KEY,
            rule_id          text        NOT NULL,
            rule_version     integer     NOT NULL,
            rule_name        text        NOT NULL,
            device_id        text        NOT NULL,
            severity         text        NOT NULL
                CHECK (severity IN ('info', 'warning', 'critical')),
            started_at       timestamptz NOT NULL,
            fired_at         timestamptz NOT NULL,
            cleared_at       timestamptz,
            value            double precision,
            clear_value      double precision,
            message          text        NOT NULL DEFAULT '',
            fired_event_id   text        NOT NULL,
            cleared_event_id text,
            acknowledged_at  timestamptz,
            acknowledged_by  text,
            updated_at       timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX alerts_fired ON alerts (fired_at DESC)")
    op.execute("CREATE INDEX alerts_device ON alerts (device_id, fired_at DESC)")
    op.execute("CREATE INDEX alerts_rule ON alerts (rule_id, fired_at DESC)")
    op.execute("CREATE INDEX alerts_open ON alerts (fired_at DESC) WHERE cleared_at IS NULL")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS alerts")
    op.execute("DROP TABLE IF EXISTS flow_versions")
    op.execute("DROP TABLE IF EXISTS flows")

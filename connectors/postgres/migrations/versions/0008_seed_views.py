"""The seeds' tables as views over ``readings``: seed 001's ``sensor_data`` and seed 002's
``sensor_readings`` (docs/compat.md), so their SQL readers keep working.

The views always exist, whatever ``FLEET_COMPAT__SEEDS`` says: a view stores nothing and costs
nothing until it is queried, and the schema must not depend on a runtime setting (one ``db
upgrade`` serves every deployment). A query on a view is a query on ``readings``: a filter on
``equipment_id``/``device_id`` and ``timestamp`` uses ``readings_device_ts``.

``sensor_data`` (seed 001: one row per equipment reading; the seed names the table, a UUID id
and its indexes on ``equipment_id`` and ``timestamp``; the other columns are its payload's
fields): ``id`` (the event id), ``equipment_id``, ``timestamp``, ``temperature``,
``vibration``, ``pressure``, ``humidity``, ``voltage`` (kept in the reading's metadata),
``created_at`` (when the row was stored). Readings with ``sensors.equipment`` only.

``sensor_readings`` (seed 002's schema, one row per sensor type of a reading): ``id``,
``device_id``, ``timestamp``, ``received_at``, ``sensor_type``, ``data`` (that sensor's
object), ``metadata`` (the device's registry metadata, as seed 002 stored its
``device_metadata``; today's, not a copy from the reading's time; null for an unregistered
device), ``created_at``. The seed's ``id`` is a BIGSERIAL; here it is a positive bigint derived
from the row's key (device, event id, sensor type): stable across queries but not in insertion
order, and unique only with high probability (a 63-bit hash); ``(device_id, event_id,
sensor_type)``, also a column set of the view, is the exact key. Ids and types are text where
the seed had VARCHAR(100)/VARCHAR(50) (our device ids run to 128 characters).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SENSOR_DATA = """
CREATE VIEW sensor_data AS
SELECT
    r.event_id                                                   AS id,
    r.device_id                                                  AS equipment_id,
    r.ts                                                         AS "timestamp",
    (r.sensors -> 'equipment' ->> 'temperature')::double precision AS temperature,
    (r.sensors -> 'equipment' ->> 'vibration')::double precision   AS vibration,
    (r.sensors -> 'equipment' ->> 'pressure')::double precision    AS pressure,
    (r.sensors -> 'equipment' ->> 'humidity')::double precision    AS humidity,
    (r.metadata ->> 'voltage')::double precision                   AS voltage,
    r.ingested_at                                                AS created_at
FROM readings AS r
WHERE r.sensor_types @> ARRAY['equipment']::text[]
"""

SENSOR_READINGS = """
CREATE VIEW sensor_readings AS
SELECT
    ('x' || substr(md5(r.device_id || '/' || r.event_id::text || '/' || s.sensor_type), 1, 16))
        ::bit(64)::bigint & 9223372036854775807                  AS id,
    r.device_id                                                  AS device_id,
    r.ts                                                         AS "timestamp",
    r.received_at                                                AS received_at,
    s.sensor_type                                                AS sensor_type,
    s.data                                                       AS data,
    d.metadata                                                   AS metadata,
    r.ingested_at                                                AS created_at,
    r.event_id                                                   AS event_id
FROM readings AS r
CROSS JOIN LATERAL jsonb_each(r.sensors) AS s (sensor_type, data)
LEFT JOIN devices AS d ON d.device_id = r.device_id
"""


def upgrade() -> None:
    op.execute(SENSOR_DATA)
    op.execute(SENSOR_READINGS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS sensor_readings")
    op.execute("DROP VIEW IF EXISTS sensor_data")

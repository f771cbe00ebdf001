"""The Faust app: one per worker process, configured from the settings.

Agents live in the ``agents`` package and register themselves on :data:`app` when imported; the
``fleetstream worker`` command imports them (this module never does, so importing the app stays
cheap and free of cycles).
"""

from __future__ import annotations

import faust

from streams.settings import Settings, get_settings
from streams.topology import DEADLETTER_MAX_BYTES


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server]


def create_app(settings: Settings) -> faust.App:
    worker, kafka = settings.worker, settings.kafka
    return faust.App(
        worker.app_id,
        broker=broker_urls(kafka.bootstrap_servers),
        store="memory://",
        autodiscover=False,
        datadir=str(worker.datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        # Our own topics are created explicitly (fleetstream topics); Faust still declares its
        # changelog and repartition topics.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Dead letters are bigger than the events that failed (see streams.topology).
        producer_max_request_size=DEADLETTER_MAX_BYTES,
        producer_max_batch_size=256 * 1024,
        producer_linger=0.005,
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=kafka.heartbeat_interval_s,
        web_enabled=worker.web_enabled,
        web_bind=worker.web_host,
        web_port=worker.web_port,
        web_host=worker.web_host,
    )


settings = get_settings()
app = create_app(settings)

"""The Faust app factory: one app per worker process, configured from the settings passed in.

Nothing here builds an app at import time: ``agents.registry.build_worker_app(settings)`` makes
the app and registers every agent on it, so tests and benchmarks can run apps with their own
settings side by side.
"""

from __future__ import annotations

import ssl

import faust
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from connectors.kafka.security import ssl_context
from schemas.settings import KafkaSettings, Settings, WorkerSettings
from streams.faust_compat import (
    buffer_changelog_writes,
    keep_queued_records_on_resume,
    limit_fetch_wait,
    log_commits_past_unacked,
    log_offset_holes,
    log_rebalance_commits,
    refuse_stale_acks,
    release_dropped_copies,
    replay_uncommitted_after_rebalance,
)
from streams.topology import DEADLETTER_MAX_BYTES
from streams.web.trust import WorkerTrust, trusted_router


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server]


def broker_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` (aiokafka) from the security settings; None for
    PLAINTEXT. The confluent-kafka clients take the same settings (connectors/kafka/security)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(kafka) if kafka.encrypted else None
    if protocol == "SSL":
        return SSLCredentials(context)
    return SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=kafka.sasl_mechanism,
    )


def _web_scheme(worker: WorkerSettings) -> str:
    return "https" if worker.web_tls_certfile else "http"


def web_ssl_context(worker: WorkerSettings) -> ssl.SSLContext | None:
    """The web server's TLS context when it has a certificate (HTTPS), else None (HTTP)."""
    if not worker.web_tls_certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(worker.web_tls_certfile, worker.web_tls_keyfile or None)
    return context


COMMIT_EVERY_DISABLED = 2**62
"""More acked messages than a worker ever sees: Faust's inline commit never fires."""
CHANGELOG_BUFFER_MAX = 20_000
"""Table writes that may wait in Faust's producer buffer (``streams.faust_compat``): a batch of
the flow-state table writes one row per device, so 20,000 devices per worker never stall."""


def create_app(settings: Settings) -> faust.App:
    worker, kafka = settings.worker, settings.kafka
    app = faust.App(
        worker.app_id,
        broker=broker_urls(kafka.bootstrap_servers),
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        autodiscover=False,
        datadir=str(worker.datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        # Our own topics are created explicitly (fleetstream topics); Faust still declares its
        # changelog and repartition topics.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # Offsets are committed in the background on this interval, never per batch (a
        # synchronous commit costs ~5 ms here); only acked (finished) events are committed.
        broker_commit_interval=worker.commit_interval_s,
        # Faust also commits inline, in the loop that hands messages to the agents, every
        # 10,000 acked messages by default; that commit first flushes Faust's producer buffer,
        # and no agent gets a message meanwhile. The background commit above is enough.
        broker_commit_every=COMMIT_EVERY_DISABLED,
        producer_acks=-1,
        producer_max_request_size=DEADLETTER_MAX_BYTES,
        producer_max_batch_size=256 * 1024,
        producer_linger=0.005,
        # Faust's default is 1200 s: a broker outage would hang a send for 20 minutes instead
        # of failing into our capped retries (which log every attempt).
        producer_request_timeout=kafka.producer_request_timeout_s,
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=kafka.heartbeat_interval_s,
        web_enabled=worker.web_enabled,
        web_bind=worker.web_host,
        web_port=worker.web_port,
        web_host=worker.web_host,
        web_ssl_context=web_ssl_context(worker),
        canonical_url=f"{_web_scheme(worker)}://{worker.web_host}:{worker.web_port}",
        # Routed web requests carry the admin token: only to the workers the operator trusts.
        Router=trusted_router(WorkerTrust.parse(worker.trusted_urls)),
    )
    buffer_changelog_writes(app, CHANGELOG_BUFFER_MAX)
    limit_fetch_wait(app, kafka.fetch_max_wait_ms)
    replay_uncommitted_after_rebalance(app)
    log_offset_holes(app)
    log_commits_past_unacked(app)
    log_rebalance_commits(app)
    refuse_stale_acks(app)
    release_dropped_copies(app)
    keep_queued_records_on_resume(app)
    return app

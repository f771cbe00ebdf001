"""The one settings object of fleetstream.

Everything that has a name, an address or a limit comes from here; this is the only module that
reads the environment. Variables use the prefix ``FLEET_`` and ``__`` between a section and its
field, e.g. ``FLEET_KAFKA__BOOTSTRAP_SERVERS`` or ``FLEET_POSTGRES__PORT``. A ``.env`` file in the
working directory is read too. Every model is frozen: pass a changed copy (``model_copy``)
instead of mutating.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.catalogue import (
    GENERIC_FIELDS_PER_READING,
    GENERIC_FIELDS_PER_SENSOR,
    GENERIC_NAME_LENGTH,
    GenericLimits,
)
from schemas.status import (
    ROLLUP_MAX_FIELDS,
    ROLLUP_MAX_WINDOWS,
    ROW_MAX_BYTES,
    STATUS_MAX_VALUES,
    rollup_row_max_bytes,
    rollup_windows_needed,
    status_row_max_bytes,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="comma-separated brokers")
    partitions: int = Field(default=8, ge=1, description="partitions of every project topic")
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="copies of every topic (project, changelogs, Kafka's own); unset: the "
        "stack's broker count",
    )
    min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="copies that must have a record before the broker acks it (acks=all: "
        "before a 2xx); unset: replication factor - 1, at least 1",
    )
    delivery_timeout_ms: int = Field(
        default=5000, ge=100, description="how long the API waits for the broker's ack"
    )
    linger_ms: int = Field(
        default=1, ge=0, description="librdkafka linger; the edges group readings themselves"
    )
    envelope_linger_ms: float = Field(
        default=5.0, ge=0, description="how long the edge groups concurrent readings"
    )
    envelope_max_items: int = Field(default=1000, ge=1, description="readings per envelope")
    envelope_max_bytes: int = Field(
        default=512 * 1024, ge=4096, description="bytes per envelope (below the topic limit)"
    )
    producer_request_timeout_s: float = Field(
        default=30.0, gt=0, description="worker producer: how long a send may hang"
    )
    queue_max_messages: int = Field(
        default=100_000, ge=1, description="producer queue of an edge; full → 429"
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        description="worker: longest a fetch waits for data (Faust's fixed 1500 held "
        "readings back 1.5 s under load)",
    )
    session_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="worker consumer session: how fast a dead worker's partitions move",
    )
    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="worker heartbeat")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="how every Kafka client connects (docs/security.md); SASL_SSL in secure mode",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism of the SASL_* protocols"
    )
    sasl_username: str = Field(default="", description="SASL user (the Kafka principal)")
    sasl_password: SecretStr = Field(default=SecretStr(""), description="SASL password")
    ssl_cafile: str = Field(
        default="", description="PEM CA that signed the brokers' certificates (empty: system CAs)"
    )
    ssl_certfile: str = Field(
        default="", description="PEM client certificate for mutual TLS (optional)"
    )
    ssl_keyfile: str = Field(default="", description="PEM private key of ssl_certfile")

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"FLEET_KAFKA__SECURITY_PROTOCOL is {self.security_protocol}: set "
                "FLEET_KAFKA__SASL_USERNAME and FLEET_KAFKA__SASL_PASSWORD"
            )
        return self

    @property
    def encrypted(self) -> bool:
        """True when the connection to the brokers is TLS."""
        return self.security_protocol in ("SSL", "SASL_SSL")


class TopicSettings(_Section):
    raw: str = Field(default="fleet.raw.v1", description="raw envelopes from every edge")
    curated: str = Field(
        default="fleet.curated.v1", description="internal: curated envelopes for the sinks"
    )
    readings: str = Field(
        default="fleet.readings.v1", description="curated readings for analytics (Avro)"
    )
    deadletter: str = Field(default="fleet.deadletter.v1", description="dead letters")
    alerts: str = Field(default="fleet.alerts.v1", description="alert transitions of flows")
    devices: str = Field(default="fleet.devices.v1", description="compacted: device registry")
    flows: str = Field(default="fleet.flows.v1", description="compacted: flow registry")
    device_status: str = Field(
        default="fleet.device-status.v1", description="compacted: online/offline transitions"
    )
    readings_1m: str = Field(
        default="fleet.readings-1m.v1", description="1-minute rollups per device and field"
    )
    media: str = Field(default="fleet.media.v1", description="one event per stored media object")
    crashes: str = Field(
        default="fleet.crashes.v1",
        description="compacted: records in hand when a worker crashed, counted (the crash ledger)",
    )
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, description="raw/curated topics")
    deadletter_retention_ms: int = Field(
        default=30 * 24 * 3600 * 1000, description="retention of the dead-letter topic"
    )
    curated_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000,
        description="internal hop; a sink away longer than this loses what was deleted "
        "(counted and dead-lettered as a gap, never silently)",
    )


class PostgresSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Postgres host")
    port: int = Field(default=5432, description="Postgres port")
    user: str = Field(default="fleetstream", description="the role fleetstream connects as")
    password: SecretStr = Field(
        default=SecretStr("fleetstream"), description="that role's password (never logged)"
    )
    database: str = Field(default="fleetstream", description="the database")
    pool_min_size: int = Field(default=1, ge=0, description="asyncpg pool: connections kept open")
    pool_max_size: int = Field(default=10, ge=1, description="asyncpg pool: most connections")
    partitions_ahead_days: int = Field(
        default=7, ge=1, description="day partitions of readings kept ready ahead of today"
    )
    last_seen_resolution_s: float = Field(
        default=5.0,
        ge=0,
        description="the sink moves devices.last_seen_at only by more than this "
        "(one row update per device and batch otherwise)",
    )
    retention_days: int = Field(
        default=90,
        ge=0,
        description="day partitions of readings wholly older than this many days are dropped "
        "by the maintenance timer and `fleetstream retention apply` (0: kept forever)",
    )
    rollup_retention_days: int = Field(
        default=730, ge=0, description="readings_1m rows whose window is older (0: kept forever)"
    )
    alert_retention_days: int = Field(
        default=365,
        ge=0,
        description="cleared alerts older than this many days are deleted; open ones are kept "
        "(0: kept forever)",
    )
    media_retention_days: int = Field(
        default=90,
        ge=0,
        description="audio chunks and finished media requests (their frames) older than this "
        "are deleted, blobs first (0: kept forever)",
    )
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        default="disable",
        description="TLS to Postgres, as libpq's sslmode: disable (clear text), require "
        "(encrypted, server not verified), verify-ca (its certificate is signed by "
        "ssl_rootcert), verify-full (that and its name is the host)",
    )
    ssl_rootcert: str = Field(
        default="",
        description="PEM file of the CA that signed Postgres's certificate (verify-ca, "
        "verify-full); empty: the system's CAs",
    )

    def dsn(self, database: str | None = None) -> str:
        """A libpq/asyncpg URL; the password is in it, so never log the result."""
        password = self.password.get_secret_value()
        name = database or self.database
        return f"postgresql://{self.user}:{password}@{self.host}:{self.port}/{name}"


class RedisSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Redis host")
    port: int = Field(default=6379, description="Redis port")
    db: int = Field(default=0, description="Redis database number")
    prefix: str = Field(default="fleet", description="first part of every key and channel")
    legacy_list: str = Field(
        default="",
        description="LPUSH every reading to this list; empty: seed 001's sensor_data_queue "
        "with its profile on (FLEET_COMPAT__SEEDS), else none",
    )
    legacy_list_max: int = Field(
        default=10_000,
        ge=1,
        description="readings that list keeps (LTRIM after each push): when it is full, each "
        "push drops the oldest, so a consumer that stops costs Redis this many at most",
    )
    flush_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="the Redis sink gathers readings this long (or state_batch_max envelopes) "
        "per write: its commands are per device, so its cost follows devices, not readings",
    )
    merge: Literal["compiled", "python"] = Field(
        default="compiled",
        description="the Redis sink's per-batch merge into commands: the compiled core "
        "(native/), which writes the Python reference's commands byte for byte and leaves a "
        "batch it cannot take whole to it, or the reference; with the legacy list or a seed "
        "feed on, the reference",
    )
    tls: bool = Field(
        default=False,
        description="connect to Redis over TLS (its certificate and name are checked)",
    )
    tls_cafile: str = Field(
        default="",
        description="PEM file of the CA that signed Redis's certificate (empty: the system's CAs)",
    )

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


DEV_MQTT_ADMIN_PASSWORD = "dev-mqtt-admin-change-me"  # noqa: S105 - documented dev default
DEV_MQTT_BRIDGE_PASSWORD = "dev-mqtt-bridge-change-me"  # noqa: S105 - documented dev default
DEV_MQTT_FLOWS_PASSWORD = "dev-mqtt-flows-change-me"  # noqa: S105 - documented dev default


class MqttSettings(_Section):
    host: str = Field(
        default="127.0.0.1",
        description="Mosquitto: the broker flows publish to (and the optional bridge reads)",
    )
    port: int = Field(default=1884, description="Mosquitto's port (devices use the MQTT front)")
    admin_username: str = Field(
        default="fleet-admin", description="broker admin (dynamic security) user"
    )
    admin_password: SecretStr = Field(
        default=SecretStr(DEV_MQTT_ADMIN_PASSWORD),
        description="that user's password (production refuses the default)",
    )
    bridge_username: str = Field(
        default="fleet-bridge", description="the user the MQTT bridge logs in as"
    )
    bridge_password: SecretStr = Field(
        default=SecretStr(DEV_MQTT_BRIDGE_PASSWORD),
        description="the bridge's password (production refuses the default)",
    )
    topics: str = Field(
        default="neurobuild/sensors/+/data,fleet/+/telemetry",
        description="comma-separated topic patterns; the one '+' is the device id",
    )
    share_group: str = Field(default="fleetstream", description="$share/<group>/... of bridges")
    client_id: str = Field(
        default="fleetstream-bridge-1", description="fixed per bridge instance (its session)"
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=0, description="broker keeps the bridge's queue this long"
    )
    receive_maximum: int = Field(
        default=5000, ge=1, le=65535, description="unacked messages the broker may send ahead"
    )
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keep-alive of the bridge")
    max_payload_bytes: int = Field(default=1_000_000, ge=1024, description="per MQTT message")
    max_batch_items: int = Field(default=1000, ge=1, description="readings per MQTT message")
    broker_max_queued_messages: int = Field(
        default=1_000_000, ge=0, description="local Mosquitto: queue per offline session"
    )
    manage_device_credentials: bool = Field(
        default=False,
        description="also give each device a Mosquitto user (only for devices that publish to "
        "Mosquitto through the bridge; the MQTT front reads the registry)",
    )
    flows_username: str = Field(
        default="fleet-flows", description="the user flows' MQTT publish nodes log in as"
    )
    flows_password: SecretStr = Field(
        default=SecretStr(DEV_MQTT_FLOWS_PASSWORD),
        description="the flows user's password (production refuses the default)",
    )
    flows_topics: str = Field(
        default="#",
        description="comma-separated patterns flows may publish to (never the device topics)",
    )

    @property
    def topic_patterns(self) -> list[str]:
        return [topic.strip() for topic in self.topics.split(",") if topic.strip()]


class MqttFrontSettings(_Section):
    """The MQTT front devices connect to (connectors/mqtt/front): PUBACK after Kafka's ack."""

    host: str = Field(default="127.0.0.1", description="where devices connect")
    port: int = Field(default=1883, description="MQTT port of the front (plain)")
    plain: bool = Field(
        default=True, description="serve plain MQTT on port (false: TLS only, needs a certificate)"
    )
    tls_port: int = Field(default=8883, description="MQTT over TLS, when a certificate is set")
    tls_certfile: str = Field(
        default="", description="PEM certificate (chain) of the TLS listener; with tls_keyfile"
    )
    tls_keyfile: str = Field(default="", description="PEM private key of tls_certfile")
    tls_client_cafile: str = Field(
        default="",
        description="PEM CA of device certificates: on the TLS listener a device may then "
        "show one (CN = its device id) instead of a token, accepted while the registry has "
        "the device enabled",
    )
    health_port: int = Field(default=9105, description="/health and /metrics of the front")
    receive_maximum: int = Field(
        default=64, ge=1, le=65535, description="QoS 1 publishes in flight per connection"
    )
    urls: str = Field(
        default="",
        description="the fronts' health URLs the operator views show, comma-separated "
        "(http://host:port); empty: the one at host:health_port (127.0.0.1 when it listens "
        "on every address). No token is sent to them",
    )

    @model_validator(mode="after")
    def _a_listener_with_what_it_needs(self) -> MqttFrontSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("FLEET_MQTT_FRONT__TLS_CERTFILE and __TLS_KEYFILE go together")
        if not self.plain and not self.tls_certfile:
            raise ValueError("FLEET_MQTT_FRONT__PLAIN=false leaves no listener without a TLS one")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_certfile)

    def health_urls(self) -> list[str]:
        listed = [url.strip().rstrip("/") for url in self.urls.split(",") if url.strip()]
        if listed:
            return listed
        every_address = ("0.0.0.0", "::", "")  # noqa: S104 - read, not bound: asked on loopback
        host = "127.0.0.1" if self.host in every_address else self.host
        host = f"[{host}]" if ":" in host else host
        return [f"http://{host}:{self.health_port}"]


class LiveSettings(_Section):
    """The WebSocket live feed (``GET /ws``)."""

    read_token: SecretStr = Field(
        default=SecretStr(""), description="Bearer token that may watch every device ('' = none)"
    )
    client_queue_max: int = Field(
        default=1000,
        ge=1,
        description="messages waiting for one client when the next reading comes (or its own "
        "message needs an answer): it is closed with 4008 and its queue freed",
    )
    client_queue_max_chars: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="characters of JSON (bytes, when ASCII) waiting for one client, likewise; "
        "with client_queue_max, a client holds at most this plus one envelope",
    )
    max_filter_items: int = Field(
        default=1000, ge=1, description="device ids or sensor types in one subscribe message"
    )


class RateLimit(_Section):
    """A token bucket: ``per_s`` requests a second on average, bursts of up to ``burst``;
    ``per_s = 0`` means no limit."""

    per_s: float = Field(ge=0, description="requests a second on average (0: no limit)")
    burst: int = Field(ge=1, description="requests at once")


class ApiSettings(_Section):
    host: str = Field(default="127.0.0.1", description="address the API binds")
    port: int = Field(default=8000, description="port the API listens on")
    tls_certfile: str = Field(
        default="", description="PEM certificate (chain): the API serves HTTPS (and HSTS) with it"
    )
    tls_keyfile: str = Field(default="", description="PEM private key of tls_certfile")
    hsts_max_age_s: int = Field(
        default=31_536_000, ge=0, description="Strict-Transport-Security max-age over HTTPS"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("FLEET_API__TLS_CERTFILE and FLEET_API__TLS_KEYFILE go together")
        return self

    max_batch_items: int = Field(default=1000, ge=1, description="readings per request")
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="below the broker's 1 MiB message limit"
    )
    retry_after_s: int = Field(default=2, ge=1, description="Retry-After on 429/503")
    max_concurrent_requests: int = Field(
        default=256, ge=1, description="requests in flight per process; beyond → 503"
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes sharing the port (uvicorn workers; one core each); "
        "/metrics then sums them all",
    )
    access_log: Literal["all", "problems", "off"] = Field(
        default="problems",
        description="JSON access lines: every request, only 4xx/5xx answers, or none "
        "(a line per request was a tenth of a one-reading request's CPU; the metrics count "
        "every request either way)",
    )
    dry_run_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="a flow's dry run answers within this, or its evaluation is stopped (422)",
    )
    dry_runs_at_once: int = Field(
        default=2,
        ge=1,
        le=32,
        description="dry runs evaluating at once per API process, each in a process of its "
        "own (~50 MB); beyond → 503",
    )
    rate_limit: RateLimit = Field(
        default_factory=lambda: RateLimit(per_s=20.0, burst=40),
        description="per-device token bucket (requests), for devices without a profile limit",
    )
    rate_limit_profiles: dict[str, RateLimit] = Field(
        default_factory=dict, description="per device profile, e.g. camera: 1/s burst 5"
    )
    idempotency_ttl_s: int = Field(
        default=24 * 3600, ge=1, description="how long an Idempotency-Key is remembered"
    )
    timestamp_max_age_s: int = Field(
        default=30 * 24 * 3600, ge=60, description="oldest reading timestamp the edge takes"
    )
    timestamp_max_ahead_s: int = Field(
        default=300, ge=0, description="how far ahead of the edge's clock a timestamp may be"
    )


DEV_ADMIN_TOKEN = "dev-admin-token-change-me"  # noqa: S105 - the documented development default


class AuthSettings(_Section):
    admin_token: SecretStr = Field(
        default=SecretStr(DEV_ADMIN_TOKEN), description="Bearer token of the admin API"
    )
    allow_unauthenticated_ingest: bool = Field(
        default=False, description="development only: ingest without device credentials"
    )
    cache_catchup_timeout_s: float = Field(
        default=5.0, ge=0, description="how long API startup waits for the device cache"
    )


class MetricsSettings(_Section):
    """Who may read ``/metrics`` of every process: the API, the workers and the MQTT fronts."""

    access: Literal["open", "token"] = Field(
        default="open",
        description="open: anyone who reaches the port (bind to loopback or a private network); "
        "token: only requests with Authorization: Bearer <FLEET_AUTH__ADMIN_TOKEN> (401 otherwise)",
    )


class WorkerSettings(_Section):
    app_id: str = Field(default="fleetstream", description="Faust app id = consumer group")
    web_enabled: bool = Field(
        default=True, description="the worker's web server: operator views, /metrics, Faust's pages"
    )
    web_host: str = Field(default="127.0.0.1", description="address the worker's web server binds")
    web_port: int = Field(
        default=6066, description="its port (give each worker on one machine its own)"
    )
    web_tls_certfile: str = Field(
        default="", description="PEM certificate (chain): the web server serves HTTPS with it"
    )
    web_tls_keyfile: str = Field(default="", description="PEM private key of web_tls_certfile")
    trusted_urls: str = Field(
        default="http://127.0.0.1:*,http://localhost:*,http://[::1]:*",
        description="the only worker URLs sent the admin token: the operator views ask the "
        "other workers, and table routing forwards requests, at the URLs they advertise in the "
        "consumer group, which anyone who can join it can set. Comma-separated "
        "scheme://host[:port] entries; host a name, *.domain, an IP ([v6] in brackets) or a "
        "CIDR; port a number or * (any); matched as advertised, no DNS lookup. Other workers "
        "are shown as not trusted and not called; the worker's own URL is always trusted",
    )
    admin_api_url: str = Field(
        default="",
        description="the admin API the operator views' actions go through (device enable, "
        "disable and token rotation; flow enable, disable and dry-run), with the admin token; "
        "empty: http://127.0.0.1:<FLEET_API__PORT>",
    )
    datadir: Path = Field(
        default=PROJECT_ROOT / ".stack" / "faust",
        description="Faust data folder: table stores (one per worker on a machine)",
    )
    validate_batch_max: int = Field(default=64, ge=1, description="envelopes per taken batch")
    validate_in_flight: int = Field(
        default=4,
        ge=1,
        description="validated batches whose outputs may await the broker's acks at once "
        "(acked in order; 1 = wait for each batch's acks before the next)",
    )
    sink_batch_max: int = Field(default=32, ge=1, description="envelopes per taken batch")
    sink_linger_s: float = Field(
        default=0.005,
        ge=0,
        description="the Postgres sink writes a batch this long after its first envelope, "
        "unless full sooner (validate sends its envelopes in a burst per batch)",
    )
    batch_within_s: float = Field(default=0.05, gt=0, description="longest wait to fill a batch")
    commit_interval_s: float = Field(default=1.0, gt=0, description="offset commits, async")
    retry_backoff_max_s: float = Field(
        default=30.0, gt=0, description="cap of the retry backoff during an outage"
    )
    maintenance_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="how often the maintenance timer makes partitions and applies retention",
    )


class StreamSettings(_Section):
    """The stream core: enrichment, device status, rollups (agents/), and its sinks."""

    table_store: Literal["memory", "rocksdb"] = Field(
        default="rocksdb", description="Faust table store (memory: tests; state is changelogged)"
    )
    state_batch_max: int = Field(
        default=128, ge=1, description="envelopes per device-state batch (status and rollups)"
    )
    state_batch_within_s: float = Field(
        default=1.0,
        gt=0,
        description="longest wait to fill a device-state batch (status table and rollups): "
        "their table work is per device and batch, so longer batches cost less per reading",
    )
    inactivity_timeout_s: int = Field(
        default=300, ge=1, description="offline after this long silent (registry overrides)"
    )
    status_check_interval_s: float = Field(
        default=5.0, gt=0, description="how often the status timer looks for silent devices"
    )
    unknown_devices: Literal["pass", "deadletter"] = Field(
        default="pass", description="readings of devices the registry does not know"
    )
    disabled_devices: Literal["pass", "deadletter"] = Field(
        default="deadletter", description="readings of disabled devices"
    )
    unknown_sensor_types: Literal["deadletter", "generic"] = Field(
        default="deadletter", description="sensor types the catalogue lacks"
    )
    core: Literal["python", "compiled"] = Field(
        default="compiled",
        description="the validate step per batch: the Python reference, or the compiled core "
        "(native/, Rust), which leaves every record it cannot take whole to the reference "
        "(decision 44)",
    )
    rollup_publish_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="each device's touched windows are published (one record per field and "
        "window) and its rollup row written (and its status row, with hold_status_rows) once "
        "per interval, devices spread over it: readings_1m is this much behind at most, the "
        "records per second follow the fleet, not the reading rate, and a batch is acked "
        "after at most this long (decision 40)",
    )
    hold_status_rows: bool = Field(
        default=False,
        description="hold a device's status row (no transition) until its rollup tick instead "
        "of writing it per batch (decision 40): cheaper at fleet scale, but the 4-worker "
        "100,000-device test lost rows across rebalances with it on; off until that is "
        "understood",
    )
    rollup_grace_s: int = Field(
        default=300, ge=0, description="late readings update their window this long after it"
    )
    status_max_values: int = Field(
        default=STATUS_MAX_VALUES,
        ge=1,
        description="sensor fields in a device's last values (status row); past it the least "
        "recently updated are dropped (counted in the row's values_dropped)",
    )
    rollup_max_fields: int = Field(
        default=ROLLUP_MAX_FIELDS,
        ge=1,
        description="fields per device and window in the rollups; further fields of that window "
        "are not rolled up (counted in the rollup row's dropped_fields)",
    )
    rollup_max_windows: int = Field(
        default=ROLLUP_MAX_WINDOWS,
        ge=1,
        description="open windows per device (rollup row); past it the oldest gives way, and a "
        "reading for a window older than all of them is not rolled up (counted). Must cover "
        "(120 + rollup_grace_s + FLEET_API__TIMESTAMP_MAX_AHEAD_S) / 60 + 1 windows",
    )
    max_replays: int = Field(default=1, ge=1, description="times a dead letter may be replayed")


class GenericSettings(_Section):
    """What a reading may carry under the generic rules: the ``generic`` sensor, and sensor types
    the catalogue lacks when FLEET_STREAM__UNKNOWN_SENSOR_TYPES=generic. The edges and the worker
    refuse a reading beyond them (422 at the HTTP edge, a dead letter from the MQTT bridge or the
    worker). Generic values are numbers and booleans, never nested: there is no depth to bound."""

    max_fields_per_sensor: int = Field(
        default=GENERIC_FIELDS_PER_SENSOR,
        ge=1,
        le=GENERIC_FIELDS_PER_SENSOR,
        description="fields of one sensor (the reading contract allows 32 at most)",
    )
    max_fields_per_reading: int = Field(
        default=GENERIC_FIELDS_PER_READING,
        ge=1,
        description="fields of one reading, over every sensor the generic rules read",
    )
    max_name_length: int = Field(
        default=GENERIC_NAME_LENGTH,
        ge=1,
        le=GENERIC_NAME_LENGTH,
        description="characters of a field name (the reading contract allows 32 at most)",
    )

    def limits(self) -> GenericLimits:
        """The bounds as the validator takes them."""
        return GenericLimits(
            fields_per_sensor=self.max_fields_per_sensor,
            fields_per_reading=self.max_fields_per_reading,
            name_length=self.max_name_length,
        )


class SchemaRegistrySettings(_Section):
    url: str = Field(
        default="http://127.0.0.1:8081/apis/ccompat/v7",
        description="Confluent-compatible schema registry API (Apicurio's ccompat v7 locally)",
    )
    timeout_s: float = Field(default=5.0, gt=0, description="per registry HTTP request")
    cafile: str = Field(
        default="",
        description="PEM file of the CA that signed the registry's certificate, for an https "
        "URL (empty: the system's CAs)",
    )
    json_contracts: list[Literal["device-status", "alerts", "readings-1m", "deadletter"]] = Field(
        default=[],
        description="analytics topics that keep JSON values for one more release (by contract "
        'name, e.g. ["alerts"]); their registry subject is emptied, every other one is Avro '
        "(docs/topics-and-contracts.md, Transition)",
    )


DEV_S3_SECRET_KEY = "dev-s3-secret-change-me"  # noqa: S105 - documented dev default
MIB = 1024 * 1024


class BlobSettings(_Section):
    """Where media objects (audio chunks, camera frames) are stored: connectors/blob/."""

    backend: Literal["filesystem", "s3"] = Field(
        default="filesystem", description="filesystem (under root) or an S3-compatible server"
    )
    root: Path = Field(
        default=PROJECT_ROOT / ".stack" / "blobs", description="filesystem backend: base folder"
    )
    s3_endpoint: str = Field(
        default="http://127.0.0.1:9000", description="S3 API URL (the local stack's S3Proxy)"
    )
    s3_cafile: str = Field(
        default="",
        description="PEM file of the CA that signed the S3 server's certificate, for an https "
        "endpoint (empty: the system's CAs)",
    )
    s3_region: str = Field(default="us-east-1", description="S3 region")
    s3_bucket: str = Field(default="fleet-media", description="created at start when missing")
    s3_access_key: str = Field(
        default="fleet-local", description="S3 access key (the local S3Proxy's identity)"
    )
    s3_secret_key: SecretStr = Field(
        default=SecretStr(DEV_S3_SECRET_KEY),
        description="S3 secret key (the local S3Proxy's credential; production refuses it)",
    )
    s3_part_bytes: int = Field(
        default=8 * MIB, ge=5 * MIB, description="multipart part size = memory per upload"
    )
    s3_timeout_s: float = Field(default=30.0, gt=0, description="per S3 request")


class MediaSettings(_Section):
    """Media ingest routes (seeds 003, 004): limits and RTSP frame capture."""

    max_audio_bytes: int = Field(default=10 * MIB, ge=1, description="one audio chunk")
    max_image_bytes: int = Field(default=50 * MIB, ge=1, description="one uploaded image")
    max_files_per_upload: int = Field(default=10, ge=1, description="images per upload request")
    rtsp_max_concurrent: int = Field(
        default=4,
        ge=1,
        description="RTSP captures running per API process; beyond → 503 (unset with seed "
        "003's profile on: 10, the seed's RTSP__MAX_CONCURRENT_STREAMS)",
    )
    rtsp_capture_timeout_s: float = Field(
        default=30.0, gt=0, description="a capture that has not stored its frames by then fails"
    )
    rtsp_default_fps: float = Field(default=1.0, gt=0, description="when a request has no fps")
    rtsp_max_fps: float = Field(default=30.0, gt=0, description="the highest fps a request may ask")
    rtsp_max_frames: int = Field(default=100, ge=1, description="frames per capture request")
    rtsp_reconnect_attempts: int = Field(
        default=3, ge=0, description="retries after a failed connection, within the timeout"
    )
    rtsp_reconnect_backoff_s: float = Field(
        default=1.0, ge=0, description="first pause before a reconnect (doubling)"
    )
    ffmpeg: str = Field(default="ffmpeg", description="ffmpeg binary (Debian package ffmpeg)")


class FlowSettings(_Section):
    """Flows and alert rules (agents/flows.py): batching and outbound calls."""

    batch_max: int = Field(default=64, ge=1, description="curated envelopes per flows batch")
    outbound_concurrency: int = Field(
        default=32, ge=1, description="HTTP/MQTT calls of flows in flight per worker"
    )
    alerts_batch_max: int = Field(default=256, ge=1, description="alert records per sink batch")


class EgressSettings(_Section):
    """Where the system connects on a user's behalf: flows' HTTP calls, RTSP cameras
    (connectors/egress.py)."""

    allow: str = Field(
        default="",
        description="comma-separated CIDRs, host names and host:port let through although "
        "loopback, private, link-local or the stack's own (e.g. a plant LAN: 10.20.0.0/16)",
    )


SEED003_RTSP_MAX_CONCURRENT = 10
"""Seed 003's ``RTSP__MAX_CONCURRENT_STREAMS`` default: ours while its profile is on, unless
``FLEET_MEDIA__RTSP_MAX_CONCURRENT`` is set."""

SEEDS = ("000", "001", "002", "003", "004")
"""The five services fleetstream replaces (``../shared/seeds/``), by their numbers."""
JWT_SECRET_MIN = 32
"""Shortest HS256 secret taken: RFC 7518 wants a key at least as long as the hash (256 bits)."""


class CompatSettings(_Section):
    """Compatibility profiles: the seeds' documented requests get the seeds' documented answers
    (docs/compat.md). One pipeline behind them: profiles change only the edges and readers."""

    seeds: str = Field(
        default="",
        description="comma-separated seed numbers whose profile is on (000, 001, 002, 003, "
        "004); empty: none",
    )
    trusted_networks: str = Field(
        default="",
        description="comma-separated CIDRs from which a seed route without authentication is "
        "served (anyone there may post as any registered device); empty: from nowhere",
    )
    jwt_secret: SecretStr = Field(
        default=SecretStr(""),
        description="seed 002's JWT variant: the HS256 secret that verifies Authorization: "
        "Bearer <JWT> (claim device_id names the device) on its sensor-data routes; at least "
        "32 characters; empty: JWTs are not accepted",
    )

    ws_port: int = Field(
        default=3001,
        ge=1,
        le=65535,
        description="seed 002's WebSocket live feed: the second port the API process serves "
        "it on (at FLEET_API__HOST) when seed 002's profile is on",
    )

    @model_validator(mode="after")
    def _known_seeds_and_networks(self) -> CompatSettings:
        unknown = sorted(set(self.profiles()) - set(SEEDS))
        if unknown:
            raise ValueError(
                f"FLEET_COMPAT__SEEDS: unknown seed(s) {', '.join(unknown)}; "
                f"known: {', '.join(SEEDS)}"
            )
        self.networks()  # a bad CIDR raises here, at start-up
        secret = self.jwt_secret.get_secret_value()
        if secret and len(secret) < JWT_SECRET_MIN:
            raise ValueError(
                f"FLEET_COMPAT__JWT_SECRET has {len(secret)} characters; HS256 needs at least "
                f"{JWT_SECRET_MIN} (256 bits)"
            )
        return self

    def profiles(self) -> frozenset[str]:
        """The seeds whose profile is on ("1" and "001" both name seed 001)."""
        return frozenset(part.strip().zfill(3) for part in self.seeds.split(",") if part.strip())

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        try:
            return [
                ipaddress.ip_network(part.strip(), strict=False)
                for part in self.trusted_networks.split(",")
                if part.strip()
            ]
        except ValueError as exc:
            raise ValueError(f"FLEET_COMPAT__TRUSTED_NETWORKS: {exc}") from None


class StackSettings(_Section):
    """The local stack (`fleetstream stack`): where it keeps its files, what it runs."""

    home: Path = Field(
        default=PROJECT_ROOT / ".stack", description="data, logs and pid files of the local stack"
    )
    kafka_version: str = Field(default="4.1.1", description="Kafka jars fetched by Maven")
    kafka_brokers: int = Field(
        default=1,
        description="KRaft brokers (each also a controller); 3: a replicated cluster on this "
        "machine, brokers at the ports of FLEET_KAFKA__BOOTSTRAP_SERVERS (unset: 9092, 9094, 9096)",
    )

    kafka_controller_port: int = Field(
        default=9093, description="KRaft controller listener of broker 1; broker n: this + 2(n-1)"
    )
    kafka_heap: str = Field(default="1g", description="-Xmx of each broker")
    secure: bool = Field(
        default=False,
        description="secure mode: a local CA, Kafka on SASL_SSL (SCRAM-SHA-512) with ACLs, TLS "
        "on the controllers (docs/security.md); its own Kafka data, apart from plain mode's",
    )
    postgres_os_user: str = Field(
        default="fleetstream", description="unprivileged OS user that runs Postgres under root"
    )
    startup_timeout_s: float = Field(
        default=120.0, gt=0, description="how long `stack up` waits for each service"
    )
    apicurio_heap: str = Field(default="384m", description="schema registry -Xmx")
    s3proxy_version: str = Field(default="3.0.0", description="S3Proxy jars fetched by Maven")
    s3proxy_heap: str = Field(default="256m", description="S3Proxy -Xmx")

    @field_validator("kafka_brokers")
    @classmethod
    def _quorum_size(cls, brokers: int) -> int:
        """One broker, or three: the smallest KRaft quorum that outlives the loss of one."""
        if brokers not in (1, 3):
            raise ValueError("FLEET_STACK__KAFKA_BROKERS is 1 or 3")
        return brokers


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLEET_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    environment: Literal["development", "test", "production"] = Field(
        default="development",
        description="production refuses the development secrets and unauthenticated ingest",
    )
    log_level: str = Field(default="INFO", description="log level of API, worker and bridge")
    allow_plaintext: bool = Field(
        default=False,
        description="production only: allow plain-text Kafka and device MQTT (e.g. on a private "
        "network whose links are encrypted below us); refused otherwise",
    )
    gc_gen0_threshold: int = Field(
        default=200_000,
        ge=0,
        description="new objects between garbage collections in api/worker/mqtt (0: Python's 700)",
    )
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    mqtt: MqttSettings = MqttSettings()
    mqtt_front: MqttFrontSettings = MqttFrontSettings()
    live: LiveSettings = LiveSettings()
    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()
    metrics: MetricsSettings = MetricsSettings()
    worker: WorkerSettings = WorkerSettings()
    stream: StreamSettings = StreamSettings()
    generic: GenericSettings = GenericSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    blob: BlobSettings = BlobSettings()
    media: MediaSettings = MediaSettings()
    flows: FlowSettings = FlowSettings()
    egress: EgressSettings = EgressSettings()
    compat: CompatSettings = CompatSettings()
    stack: StackSettings = StackSettings()

    @model_validator(mode="before")
    @classmethod
    def _kafka_follows_the_stack(cls, data: Any) -> Any:
        """Kafka settings left unset follow the stack's broker count (see derive_kafka)."""
        if not isinstance(data, dict):
            return data
        derived = derive_kafka(data.get("kafka"), data.get("stack"))
        return {**data, "kafka": derived} if derived is not None else data

    @model_validator(mode="after")
    def _replicas_fit(self) -> Settings:
        kafka = self.kafka
        if kafka.min_insync_replicas > kafka.replication_factor:
            raise ValueError(
                f"FLEET_KAFKA__MIN_INSYNC_REPLICAS ({kafka.min_insync_replicas}) is above "
                f"FLEET_KAFKA__REPLICATION_FACTOR ({kafka.replication_factor}): no write could "
                "ever be acked"
            )
        return self

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        default = PostgresSettings().password.get_secret_value()
        if self.environment == "production" and self.postgres.password.get_secret_value() == (
            default
        ):
            raise ValueError(
                "FLEET_POSTGRES__PASSWORD is the development default; set a real one in production"
            )
        self._check_auth()
        if (
            self.environment == "production"
            and self.blob.backend == "s3"
            and self.blob.s3_secret_key.get_secret_value() in ("", DEV_S3_SECRET_KEY)
        ):
            raise ValueError("FLEET_BLOB__S3_SECRET_KEY is empty or the development default")
        self._check_row_bounds()
        self._check_transport()
        return self

    def _check_row_bounds(self) -> None:
        """Refuse bounds under which a device's status or rollup row could grow past
        ROW_MAX_BYTES (a changelog record over the broker's limit stops the worker), or a row
        could not hold the windows the grace period and the edge's clock skew keep open."""
        stream, partitions = self.stream, self.kafka.partitions
        status = status_row_max_bytes(stream.status_max_values, partitions)
        rollup = rollup_row_max_bytes(
            stream.rollup_max_windows, stream.rollup_max_fields, partitions
        )
        for size, names in (
            (status, "FLEET_STREAM__STATUS_MAX_VALUES"),
            (rollup, "FLEET_STREAM__ROLLUP_MAX_WINDOWS or __ROLLUP_MAX_FIELDS"),
        ):
            if size > ROW_MAX_BYTES:
                raise ValueError(
                    f"a device's row could encode to {size} bytes, over {ROW_MAX_BYTES}; lower "
                    f"{names} (or FLEET_KAFKA__PARTITIONS)"
                )
        needed = rollup_windows_needed(stream.rollup_grace_s, self.api.timestamp_max_ahead_s)
        if stream.rollup_max_windows < needed:
            raise ValueError(
                f"FLEET_STREAM__ROLLUP_MAX_WINDOWS is {stream.rollup_max_windows}; the grace "
                f"period and the edge's clock skew keep up to {needed} windows open"
            )

    def _check_transport(self) -> None:
        """Production refuses clear-text hops to Kafka and from devices over MQTT."""
        if self.environment != "production" or self.allow_plaintext:
            return
        if not self.kafka.encrypted:
            raise ValueError(
                f"FLEET_KAFKA__SECURITY_PROTOCOL is {self.kafka.security_protocol}: production "
                "needs SSL or SASL_SSL (or FLEET_ALLOW_PLAINTEXT=true)"
            )
        front = self.mqtt_front
        if front.plain:
            raise ValueError(
                "FLEET_MQTT_FRONT__PLAIN is true: production serves MQTT over TLS only (set "
                "FLEET_MQTT_FRONT__TLS_CERTFILE/KEYFILE and PLAIN=false, or FLEET_ALLOW_PLAINTEXT)"
            )

    def _check_auth(self) -> None:
        admin_token = self.auth.admin_token.get_secret_value()
        if self.environment == "production" and admin_token in ("", DEV_ADMIN_TOKEN):
            raise ValueError(
                "FLEET_AUTH__ADMIN_TOKEN is empty or the development default; set a real one in "
                "production"
            )
        if self.auth.allow_unauthenticated_ingest and self.environment != "development":
            raise ValueError(
                "FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST is for development only; "
                f"FLEET_ENVIRONMENT is {self.environment}"
            )
        mqtt = self.mqtt
        for name, secret, default in (
            ("ADMIN_PASSWORD", mqtt.admin_password, DEV_MQTT_ADMIN_PASSWORD),
            ("BRIDGE_PASSWORD", mqtt.bridge_password, DEV_MQTT_BRIDGE_PASSWORD),
            ("FLOWS_PASSWORD", mqtt.flows_password, DEV_MQTT_FLOWS_PASSWORD),
        ):
            if self.environment == "production" and secret.get_secret_value() in ("", default):
                raise ValueError(
                    f"FLEET_MQTT__{name} is empty or the development default; set a real one"
                )


def _given(section: object) -> dict[str, Any]:
    """The fields given for a section: a dict from the environment, or a model's set fields."""
    if isinstance(section, BaseModel):
        return {name: getattr(section, name) for name in section.model_fields_set}
    return dict(section) if isinstance(section, dict) else {}


def cluster_bootstrap(brokers: int, first_port: int = 9092) -> str:
    """The stack's default broker addresses: ports ``first_port + 2i`` (each broker's KRaft
    controller listens on the port after its own, as 9092/9093 of the single broker)."""
    return ",".join(f"127.0.0.1:{first_port + 2 * i}" for i in range(brokers))


def derive_kafka(kafka: object, stack: object) -> dict[str, Any] | None:
    """The Kafka section with what was not given filled from the stack's broker count:
    replication factor = brokers, ``min.insync.replicas`` = replication factor - 1 (at least 1:
    a topic keeps taking writes with one copy lost), and with several brokers, the bootstrap
    list of the stack's default ports. None when nothing is derived (one broker, as before)."""
    brokers = int(_given(stack).get("kafka_brokers", 1))
    given = _given(kafka)
    derived: dict[str, Any] = {}
    if "replication_factor" not in given and brokers > 1:
        derived["replication_factor"] = brokers
    replication = int(derived.get("replication_factor", given.get("replication_factor", 1)))
    if "min_insync_replicas" not in given and replication > 1:
        derived["min_insync_replicas"] = max(1, replication - 1)
    if "bootstrap_servers" not in given and brokers > 1:
        derived["bootstrap_servers"] = cluster_bootstrap(brokers)
    if not derived:
        return None
    return {**given, **derived}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

"""Prometheus metrics of one API process, served at ``GET /metrics``.

Each app has its own registry (tests and benchmarks build several apps in one process). With
``FLEET_API__PROCESSES`` above 1, ``fleetstream api`` sets ``PROMETHEUS_MULTIPROC_DIR`` for its
processes: every value is then kept in files there, and :meth:`ApiMetrics.exposition` sums the
processes (gauges of requests in flight, producer queue and live clients: over the processes
alive), so a scrape answered by any of them shows the whole API.

* ``fleet_api_requests_total{route, method, status}``: answered requests; ``route`` is the path
  template (``/api/v1/sensors/{equipment_id}/latest``), ``unmatched`` for unknown paths;
* ``fleet_api_request_duration_seconds{route, method}``: latency histogram;
* ``fleet_api_readings_accepted_total{route}``: readings acked by Kafka;
* ``fleet_api_auth_failures_total{status}``: 401 (no, unknown or disabled credentials) and 403
  (another device's id) answers;
* ``fleet_api_rate_limited_total``: 429 answers of the per-device limit;
* ``fleet_api_requests_in_flight``: requests being served now;
* ``fleet_api_producer_queue_depth``: records in the librdkafka queue, not yet acked;
* ``fleet_api_live_clients``: WebSocket clients of the live feed connected now;
* ``fleet_api_live_clients_dropped_total``: live-feed clients closed for being too slow (4008);
* ``fleet_api_frames_stored_total{source}``: image frames stored (``upload``: seed 003's
  multipart upload, ``rtsp``: captured from a stream), counted once each frame is in the blob
  store, recorded in Postgres and announced on ``fleet.media.v1`` (a request refused or failed
  before that counts none).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Set by ``fleetstream api`` for its processes when there are several (prometheus_client's
variable: it decides how values are stored when the library is imported)."""


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "fleet_api_requests",
            "Answered HTTP requests",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fleet_api_request_duration_seconds",
            "Time to answer a request",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.readings = Counter(
            "fleet_api_readings_accepted",
            "Readings acked by Kafka",
            ["route"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "fleet_api_auth_failures",
            "Requests refused for their credentials",
            ["status"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "fleet_api_rate_limited", "Requests refused by the per-device limit", registry=registry
        )
        self.in_flight = Gauge(
            "fleet_api_requests_in_flight",
            "Requests being served",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.producer_queue = Gauge(
            "fleet_api_producer_queue_depth",
            "Records in the producer queue, not yet acked",
            registry=registry,
            multiprocess_mode="livesum",
        )

        self.live_clients = Gauge(
            "fleet_api_live_clients",
            "Live-feed WebSocket clients connected",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.live_dropped = Counter(
            "fleet_api_live_clients_dropped",
            "Live-feed clients closed for falling too far behind",
            registry=registry,
        )
        self.frames_stored = Counter(
            "fleet_api_frames_stored",
            "Image frames stored, recorded and announced",
            ["source"],
            registry=registry,
        )

    def count_frames(self, source: str, frames: int) -> None:
        """``frames`` image frames of ``source`` (``upload``, ``rtsp``) are stored."""
        if frames:
            self.frames_stored.labels(source).inc(frames)

    def watch_producer(self, queue_length: Callable[[], int]) -> Callable[[], None] | None:
        """Read the producer's queue depth at every scrape. Across processes a scrape reads
        only files: then the returned function must be called now and then to store it."""
        if multiprocess():
            return lambda: self.producer_queue.set(queue_length())
        self.producer_queue.set_function(lambda: float(queue_length()))
        return None

    def exposition(self) -> CollectorRegistry:
        """What ``/metrics`` renders: this app's registry, or every process's values."""
        if not multiprocess():
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged

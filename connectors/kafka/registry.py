"""Publishing documents to a compacted registry topic (``fleet.devices.v1``, ``fleet.flows.v1``).

Contract: :meth:`RegistryPublisher.publish` returns only after the broker acked every record with
``acks=all`` (idempotent producer), and raises :class:`KafkaUnavailable` otherwise. A record is
``(id, value)``; ``value=None`` is a tombstone (the device or flow was deleted).

Registry changes are rare, so this is a plain blocking produce-and-flush, serialised by a lock
(callers on an event loop use ``asyncio.to_thread``). ``message.timeout.ms`` equals the flush
timeout, so when ``publish`` gives up, librdkafka has given up too: no stale record is left in
the queue to land after a newer one published by another process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.security import client_config

RegistryRecord = tuple[str, bytes | None]
"""``(id, document)``; a ``None`` document is a tombstone."""
PUBLISH_CHUNK = 10_000
"""Records queued at a time (librdkafka's local queue holds 100,000 by default)."""


class RegistryPublisher:
    def __init__(
        self, bootstrap_servers: str, topic: str, *, delivery_timeout_ms: int = 5000
    ) -> None:
        self.topic = topic
        self._timeout_s = delivery_timeout_ms / 1000
        self._producer = Producer(
            {
                **client_config(bootstrap_servers),
                "client.id": "fleetstream-registry",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.timeout.ms": delivery_timeout_ms,
                "socket.connection.setup.timeout.ms": min(delivery_timeout_ms, 10_000),
            }
        )
        self._lock = threading.Lock()

    def publish(self, records: Sequence[RegistryRecord]) -> None:
        """Produce ``records`` in order and wait until the broker acked all of them.

        A resync of a large fleet publishes 10^5 records and more: they go in chunks, each
        acked before the next is queued, so librdkafka's local queue never overflows and no
        record waits in it longer than ``message.timeout.ms``."""
        with self._lock:
            for start in range(0, len(records), PUBLISH_CHUNK):
                self._publish_chunk(records[start : start + PUBLISH_CHUNK])

    def _publish_chunk(self, records: Sequence[RegistryRecord]) -> None:
        failures: list[str] = []
        acked = 0

        def report(err: KafkaError | None, _msg: Message) -> None:
            nonlocal acked
            if err is None:
                acked += 1
            else:
                failures.append(err.str())

        for record_id, value in records:
            try:
                self._producer.produce(self.topic, value, record_id.encode(), on_delivery=report)
            except (BufferError, KafkaException) as exc:
                self._producer.flush(self._timeout_s + 1)
                raise KafkaUnavailable(f"Kafka refused a registry record: {exc}") from exc
        # One second past message.timeout.ms: by then every record has its report.
        self._producer.flush(self._timeout_s + 1)
        if failures or acked != len(records):
            reason = failures[0] if failures else "no delivery report"
            raise KafkaUnavailable(
                f"{len(records) - acked} of {len(records)} registry records not acked: {reason}"
            )

    def close(self) -> None:
        with self._lock:
            self._producer.flush(self._timeout_s + 1)

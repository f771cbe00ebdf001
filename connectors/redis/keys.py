"""Redis key and channel names: the contract other services read (see the README).

=====================================  ======  ===============================================
name                                   kind    what
=====================================  ======  ===============================================
``{p}:device:{id}:latest``             hash    ``event_id``, ``ts``, ``received_at``,
                                               ``reading`` (the curated reading's JSON)
``{p}:device:{id}:status``             hash    ``device_id``, ``last_seen``, ``last_event_id``,
                                               ``v:<sensor>.<field>`` (latest value, JSON),
                                               ``online`` (``1``/``0``), ``seq``,
                                               ``changed_at``, ``reason``
``{p}:readings:{id}``                  pubsub  ``{"device_id", "readings": [...]}`` per batch
``{p}:readings``                       pubsub  the same messages, every device
``{p}:status:{id}``                    pubsub  a :class:`~schemas.status.StatusChange` JSON
``{p}:status``                         pubsub  the same, every device
=====================================  ======  ===============================================

``{p}`` is ``FLEET_REDIS__PREFIX`` (``fleet``). The optional legacy list is
``FLEET_REDIS__LEGACY_LIST``, as named (seed 001 called it ``sensor_data_queue``).
"""

from __future__ import annotations

from dataclasses import dataclass

VALUE_PREFIX = "v:"
"""Status hash fields holding a last value are ``v:<sensor>.<field>``."""


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = "fleet"

    def latest(self, device_id: str) -> str:
        return f"{self.prefix}:device:{device_id}:latest"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}:device:{device_id}:status"

    def readings_channel(self, device_id: str) -> str:
        return f"{self.prefix}:readings:{device_id}"

    @property
    def readings_all(self) -> str:
        return f"{self.prefix}:readings"

    def status_channel(self, device_id: str) -> str:
        return f"{self.prefix}:status:{device_id}"

    @property
    def status_all(self) -> str:
        return f"{self.prefix}:status"

"""Seed 002's two alert rules as flows (``fleetstream flows load-examples``).

* ``gas-above-500``: the first MQ134 reading above 500 ppm fires a critical alert at once, as
  seed 002's alert service did; it clears once the concentration is back under 450 ppm
  (hysteresis, so a value hovering around 500 does not flap). Add ``for_s`` to make it wait for
  a sustained excursion (docs/flows.md).
* ``presence-after-hours``: LD2410 presence between 22:00 and 06:00 in the device's time zone
  (registry metadata ``timezone``, else ``location.timezone``, else UTC), on devices tagged
  ``secure-area`` (seed 002's "secure area"); clears when the radar sees nobody.
"""

from __future__ import annotations

from typing import Any, Final

from schemas.flows import FlowDefinition, decode_definition

GAS_ABOVE_500: Final[dict[str, Any]] = {
    "name": "Gas above 500 ppm",
    "description": "seed 002: high_gas_concentration (MQ134 above 500 ppm, at once)",
    "match": {"sensors": ["mq134"]},
    "nodes": [
        {
            "id": "high_gas",
            "type": "alert",
            "condition": "sensors.mq134.gas_concentration > 500.0",
            "clear": "sensors.mq134.gas_concentration < 450.0",
            "value": "sensors.mq134.gas_concentration",
            "severity": "critical",
            "message": "gas concentration ${value} ppm on ${device.id} (threshold 500 ppm)",
        }
    ],
}

PRESENCE_AFTER_HOURS: Final[dict[str, Any]] = {
    "name": "Presence after hours",
    "description": "seed 002: unauthorized_presence (LD2410 presence 22:00-06:00, secure areas)",
    "match": {"tags": ["secure-area"], "sensors": ["ld2410"]},
    "nodes": [
        {
            "id": "after_hours",
            "type": "alert",
            "condition": "sensors.ld2410.presence",
            "clear": "!sensors.ld2410.presence",
            "schedule": {"start": "22:00", "end": "06:00"},
            "severity": "warning",
            "message": "presence detected after hours by ${device.id}",
        }
    ],
}

EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    "gas-above-500": GAS_ABOVE_500,
    "presence-after-hours": PRESENCE_AFTER_HOURS,
}


def examples() -> dict[str, FlowDefinition]:
    """The example flows by id, checked."""
    return {flow_id: decode_definition(body) for flow_id, body in EXAMPLES.items()}

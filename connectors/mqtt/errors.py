"""Errors of the MQTT connectors."""

from __future__ import annotations

from schemas.errors import FleetError


class BrokerUnavailable(FleetError):
    """The MQTT broker could not be reached, refused our login, or did not answer in time."""

    retriable = True


class DynsecRefused(FleetError):
    """The broker's dynamic-security plugin refused a command (the error names why)."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic security refused {command}: {error}")
        self.command = command
        self.error = error

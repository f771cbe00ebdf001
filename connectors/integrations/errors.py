"""Why an outbound call of a flow failed, and whether trying again may help."""

from __future__ import annotations

from schemas.errors import FleetError


class CallFailed(FleetError):
    """One attempt of an integration call failed; ``retriable`` is per failure here (a 503 may
    pass on the next attempt, a 404 will not)."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.can_retry = retriable

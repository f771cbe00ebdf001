"""Names of the worker's Faust tables: the agents that own them and the web views that read
them both take the names from here (the changelog topics are ``<app id>-<name>-changelog``)."""

from typing import Final

DEVICE_STATUS: Final = "device-status"
ROLLUPS: Final = "rollups"
FLOW_STATE: Final = "flow-state"

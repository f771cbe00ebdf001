"""Consumer lag of the app's consumer groups, per partition, as the broker sees it.

The groups are the Faust app's (``FLEET_WORKER__APP_ID``) and the sink groups beside it
(``<app_id>.<sink>``, ``agents.sink_group``). Lag is the partition's end offset minus the
group's committed offset: what the group has not yet finished (Faust commits only acked events,
every ``FLEET_WORKER__COMMIT_INTERVAL_S``). A partition the group never committed counts from
its first retained offset. Read with the admin API (no group is joined), blocking: callers
use :meth:`LagReader.read` from a thread, and keep the answer a few seconds.
"""

from __future__ import annotations

import uuid

from connectors.kafka.inspection import Inspector, PartitionLag

TIMEOUT_S = 5.0

__all__ = ["LagReader", "PartitionLag", "in_app"]


def in_app(group: str, app_id: str) -> bool:
    return group == app_id or group.startswith(f"{app_id}.")


class LagReader:
    def __init__(self, bootstrap_servers: str, app_id: str) -> None:
        self.app_id = app_id
        self._inspector = Inspector(
            bootstrap_servers, timeout_s=TIMEOUT_S, client_id=f"{app_id}-lag-{uuid.uuid4()}"
        )

    def read(self) -> list[PartitionLag]:
        """Lag of every partition of every topic the app's groups committed offsets for
        (:class:`~connectors.kafka.errors.KafkaUnavailable` when the cluster does not answer)."""
        groups = [group for group in self._inspector.groups() if in_app(group, self.app_id)]
        return self._inspector.lag(groups)

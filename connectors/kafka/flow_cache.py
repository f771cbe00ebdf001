"""The flow registry followed in memory: every worker reads ``fleet.flows.v1`` from the start.

Like the device cache, it follows the topic with :class:`connectors.kafka.compacted.
TopicFollower` (every partition from the beginning, no group, no commits), applies each record
(a document replaces the flow, a tombstone removes it) and counts changes in ``generation``, so the
flows agent rebuilds its compiled set only when something changed. ``wait_caught_up`` tells when
the topic was read up to the high watermarks seen at start: until then a worker does not know
every flow and must not run any (an alert rule would miss readings).
"""

from __future__ import annotations

import logging

import msgspec

from connectors.kafka.compacted import TopicFollower, read_to_end
from schemas.flows import FlowDocument, decode_flow_document

log = logging.getLogger(__name__)


class FlowIndex:
    """Flow documents by id; applied from one thread, read from others (single dict steps)."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowDocument] = {}
        self.generation = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            log.error("flow registry record without a key skipped")
            return
        flow_id = key.decode(errors="replace")
        if value is None:
            if self._flows.pop(flow_id, None) is not None:
                self.generation += 1
            return
        try:
            document = decode_flow_document(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("flow registry record for %s skipped: %s", flow_id, exc)
            return
        if document.flow_id != flow_id:
            log.error("flow record keyed %s is about %s; skipped", flow_id, document.flow_id)
            return
        self._flows[flow_id] = document
        self.generation += 1

    def documents(self) -> dict[str, FlowDocument]:
        return dict(self._flows)


def read_flows(bootstrap_servers: str, topic: str, timeout_s: float = 30.0) -> FlowIndex:
    """The flow registry as the topic holds it now (``flows resync``)."""
    index = FlowIndex()
    read_to_end(bootstrap_servers, topic, index, timeout_s)
    return index


class FlowCache(TopicFollower):
    """One worker's copy of the flow registry: ``start()`` once, ``stop()`` once."""

    name = "flow cache"

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.index = FlowIndex()
        super().__init__(bootstrap_servers, topic, self.index)

    @property
    def generation(self) -> int:
        return self.index.generation

    def documents(self) -> dict[str, FlowDocument]:
        return self.index.documents()

"""The flow registry followed in memory: every worker reads ``fleet.flows.v1`` from the start.

Like the device cache, it follows the topic with :class:`connectors.kafka.compacted.
DocumentCache` (every partition from the beginning, no group, no commits), applies each record
(a document replaces the flow, a tombstone removes it) and counts changes in ``generation``, so the
flows agent rebuilds its compiled set only when something changed. ``wait_caught_up`` tells when
the topic was read up to the high watermarks seen at start: until then a worker does not know
every flow and must not run any (an alert rule would miss readings).
"""

from __future__ import annotations

from connectors.kafka.compacted import DocumentCache, DocumentIndex
from schemas.flows import FlowDocument, decode_flow_document


class FlowIndex(DocumentIndex[FlowDocument]):
    """Flow documents by id (:class:`DocumentIndex`); ``generation`` counts the changes."""

    label = "flow registry"

    def __init__(self) -> None:
        super().__init__(decode_flow_document, _flow_id)
        self.generation = 0

    def _stored(self, document: FlowDocument, previous: FlowDocument | None) -> None:
        self.generation += 1

    def _removed(self, record_id: str, previous: FlowDocument | None) -> None:
        if previous is not None:
            self.generation += 1


def _flow_id(document: FlowDocument) -> str:
    return document.flow_id


class FlowCache(DocumentCache[FlowDocument]):
    """One worker's copy of the flow registry: ``start()`` once, ``stop()`` once."""

    name = "flow cache"
    noun = "flows"

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._flows = FlowIndex()
        super().__init__(bootstrap_servers, topic, self._flows)

    @property
    def generation(self) -> int:
        return self._flows.generation

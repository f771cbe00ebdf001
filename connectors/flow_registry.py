"""The flow registry: Postgres is the record, ``fleet.flows.v1`` tells every worker.

The same contract as the device registry (:mod:`connectors.registry`, decision 8): a change is
committed in Postgres, then the committed row is re-read under the flow's advisory lock and
published with ``acks=all`` before the caller gets an answer. A broker that does not ack gives
:class:`FlowNotPublished` (the API answers 503): the change is stored and any retry, the next
change, or ``fleetstream flows resync`` publishes it. A deleted flow is a tombstone.

Every definition is checked (the flow engine compiles it) before it is stored, so a worker
never receives a flow it cannot run.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.registry import RegistryRecord
from connectors.postgres.flows import (
    FlowExists,
    FlowNotFound,
    FlowPage,
    PublishAllFlows,
    PublishFlow,
)
from schemas.errors import FleetError
from schemas.flows import FLOW_ID_PATTERN, FlowDefinition, FlowDocument, encode

T = TypeVar("T")
_FLOW_ID = re.compile(FLOW_ID_PATTERN)


class FlowNotPublished(FleetError):
    """Stored in Postgres, not confirmed on ``fleet.flows.v1``; retrying the request helps."""

    retriable = True


class FlowRecords(Protocol):
    """The system of record; :class:`connectors.postgres.flows.FlowStore` in production."""

    async def create(
        self, flow_id: str, definition: FlowDefinition, enabled: bool = True
    ) -> FlowDocument: ...
    async def get(self, flow_id: str, version: int | None = None) -> FlowDocument | None: ...
    async def list(
        self, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
    ) -> FlowPage: ...
    async def update(self, flow_id: str, definition: FlowDefinition) -> FlowDocument: ...
    async def set_enabled(self, flow_id: str, enabled: bool) -> FlowDocument: ...
    async def delete(self, flow_id: str) -> None: ...
    async def publish_current(self, flow_id: str, publish: PublishFlow) -> None: ...
    async def publish_all(self, publish: PublishAllFlows) -> None: ...


class Publisher(Protocol):
    topic: str

    def publish(self, records: Sequence[RegistryRecord]) -> None: ...


@dataclass(frozen=True)
class ResyncReport:
    published: int
    unchanged: int
    tombstoned: int


DefinitionCheck = Callable[[str, FlowDefinition], None]
"""Raises ``ValidationFailure`` for a definition a worker could not run (the flow engine's
``check_definition``): every definition is checked before it is stored."""


class FlowRegistry:
    def __init__(self, store: FlowRecords, publisher: Publisher, check: DefinitionCheck) -> None:
        self.store = store
        self._publisher = publisher
        self._check = check

    async def get(self, flow_id: str, version: int | None = None) -> FlowDocument | None:
        if not _FLOW_ID.match(flow_id):
            return None
        return await self.store.get(flow_id, version)

    async def list(
        self, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
    ) -> FlowPage:
        return await self.store.list(enabled=enabled, limit=limit, offset=offset)

    async def create(
        self, flow_id: str, definition: FlowDefinition, enabled: bool = True
    ) -> FlowDocument:
        self._check(flow_id, definition)
        return await self._then_publish(flow_id, self.store.create(flow_id, definition, enabled))

    async def update(self, flow_id: str, definition: FlowDefinition) -> FlowDocument:
        """Store ``definition`` as the flow's next version; workers swap to it."""
        self._check(flow_id, definition)
        return await self._then_publish(flow_id, self.store.update(flow_id, definition))

    async def set_enabled(self, flow_id: str, enabled: bool) -> FlowDocument:
        return await self._then_publish(flow_id, self.store.set_enabled(flow_id, enabled))

    async def delete(self, flow_id: str) -> None:
        await self._then_publish(flow_id, self.store.delete(flow_id))

    async def publish(self, flow_id: str) -> None:
        await self.store.publish_current(flow_id, self._publish_one)

    async def resync(self, on_topic: Mapping[str, FlowDocument]) -> ResyncReport:
        """Make the topic match the table, given what the topic holds now."""
        counts: dict[str, int] = {}

        async def publish_all(documents: Sequence[FlowDocument]) -> None:
            in_table = {document.flow_id for document in documents}
            changed = [d for d in documents if on_topic.get(d.flow_id) != d]
            gone = sorted(set(on_topic) - in_table)
            records: list[RegistryRecord] = [(d.flow_id, encode(d)) for d in changed]
            await self._send(records + [(flow_id, None) for flow_id in gone])
            counts.update(
                published=len(changed),
                unchanged=len(documents) - len(changed),
                tombstoned=len(gone),
            )

        await self.store.publish_all(publish_all)
        return ResyncReport(**counts)

    async def _then_publish(self, flow_id: str, change: Awaitable[T]) -> T:
        if not _FLOW_ID.match(flow_id):
            if asyncio.iscoroutine(change):
                change.close()
            raise FlowNotFound(flow_id)
        try:
            result = await change
        except (FlowNotFound, FlowExists):
            await self.publish(flow_id)  # a retried request publishes what is stored
            raise
        await self.publish(flow_id)
        return result

    async def _publish_one(self, flow_id: str, document: FlowDocument | None) -> None:
        await self._send([(flow_id, None if document is None else encode(document))])

    async def _send(self, records: Sequence[RegistryRecord]) -> None:
        try:
            await asyncio.to_thread(self._publisher.publish, records)
        except KafkaUnavailable as exc:
            raise FlowNotPublished(
                f"the change is stored in Postgres but {self._publisher.topic} did not confirm "
                f"it ({exc}); retry the request, or run `fleetstream flows resync`"
            ) from exc

"""In-memory doubles of the registries' stores (devices, flows), publisher and device cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from connectors.kafka.device_cache import DeviceIndex
from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.registry import RegistryRecord
from connectors.postgres.devices import (
    DeviceExists,
    DeviceNotFound,
    DevicePage,
    DeviceQuery,
    TokenInUse,
)
from connectors.postgres.flows import FlowExists, FlowNotFound, FlowPage
from connectors.postgres.registry import Publish, PublishAll, PublishMany, RecordNotFound
from schemas.devices import (
    Device,
    DeviceChanges,
    NewDevice,
    device_own_metadata,
    encode_device,
    hash_token,
)
from schemas.flows import FlowDefinition, FlowDocument
from tests import clock

D = TypeVar("D")


class MemoryRecords(Generic[D]):
    """A registry table as a dict: what both kinds share (delete, publish), as in
    :class:`~connectors.postgres.registry.RegistryTable`."""

    def __init__(self, not_found: Callable[[str], RecordNotFound]) -> None:
        self.rows: dict[str, D] = {}
        self._not_found = not_found

    async def delete(self, record_id: str) -> None:
        self._existing(record_id)
        del self.rows[record_id]

    async def publish_current(self, record_id: str, publish: Publish[D]) -> None:
        await publish(record_id, self.rows.get(record_id))

    async def publish_current_many(
        self, record_ids: Sequence[str], publish: PublishMany[D]
    ) -> None:
        await publish([(record_id, self.rows.get(record_id)) for record_id in record_ids])

    async def publish_all(self, publish: PublishAll[D]) -> None:
        await publish([record for _, record in sorted(self.rows.items())])

    def _existing(self, record_id: str) -> D:
        if record_id not in self.rows:
            raise self._not_found(record_id)
        return self.rows[record_id]


class MemoryStore(MemoryRecords[Device]):
    """The devices table as a dict; same errors as :class:`DeviceStore`."""

    def __init__(self) -> None:
        super().__init__(DeviceNotFound)

    async def create(self, new: NewDevice, token_hash: str) -> Device:
        if new.device_id in self.rows:
            raise DeviceExists(new.device_id)
        if any(d.token_hash == token_hash for d in self.rows.values()):
            raise TokenInUse("that token is already another device's token")
        now = clock.now()
        device = Device(
            **msgspec.structs.asdict(new), token_hash=token_hash, created_at=now, updated_at=now
        )
        self.rows[new.device_id] = device
        return device

    async def create_many(self, devices: Sequence[tuple[NewDevice, str]]) -> list[str]:
        """All or nothing, as the one INSERT of :meth:`DeviceStore.create_many`."""
        held = {d.token_hash: d.device_id for d in self.rows.values()}
        for new, token_hash in devices:
            if held.get(token_hash, new.device_id) != new.device_id:
                raise TokenInUse("that token is already another device's token", new.device_id)
        fresh = [(new, token_hash) for new, token_hash in devices if new.device_id not in self.rows]
        for new, token_hash in fresh:
            await self.create(new, token_hash)
        return [new.device_id for new, _ in fresh]

    async def get(self, device_id: str) -> Device | None:
        return self.rows.get(device_id)

    async def list(self, query: DeviceQuery) -> DevicePage:
        items = sorted(self.rows.values(), key=lambda d: d.device_id)
        return DevicePage(items[query.offset : query.offset + query.limit], len(items))

    async def update(self, device_id: str, changes: DeviceChanges) -> Device:
        current = self._existing(device_id)
        device = msgspec.structs.replace(current, **changes.as_dict())
        self.rows[device_id] = device
        return device

    async def update_own_metadata(self, device_id: str, metadata: dict[str, Any]) -> Device:
        current = self._existing(device_id)
        kept = device_own_metadata(current.metadata, metadata)
        device = msgspec.structs.replace(current, metadata=kept)
        self.rows[device_id] = device
        return device

    async def set_token(self, device_id: str, token_hash: str) -> Device:
        device = msgspec.structs.replace(self._existing(device_id), token_hash=token_hash)
        self.rows[device_id] = device
        return device

    async def ping(self, timeout_s: float = 2.0) -> bool:
        return True


class MemoryFlowStore(MemoryRecords[FlowDocument]):
    """The flows table as a dict (current versions only); same errors as :class:`FlowStore`."""

    def __init__(self) -> None:
        super().__init__(FlowNotFound)

    async def create(
        self, flow_id: str, definition: FlowDefinition, enabled: bool = True
    ) -> FlowDocument:
        if flow_id in self.rows:
            raise FlowExists(flow_id)
        now = clock.now()
        document = FlowDocument(
            flow_id=flow_id,
            version=1,
            enabled=enabled,
            definition=definition,
            created_at=now,
            updated_at=now,
        )
        self.rows[flow_id] = document
        return document

    async def get(self, flow_id: str, version: int | None = None) -> FlowDocument | None:
        document = self.rows.get(flow_id)
        if document is None or version not in (None, document.version):
            return None
        return document

    async def list(
        self, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
    ) -> FlowPage:
        items = [d for _, d in sorted(self.rows.items()) if enabled in (None, d.enabled)]
        return FlowPage(items[offset : offset + limit], len(items))

    async def update(self, flow_id: str, definition: FlowDefinition) -> FlowDocument:
        current = self._existing(flow_id)
        document = msgspec.structs.replace(
            current, definition=definition, version=current.version + 1
        )
        self.rows[flow_id] = document
        return document

    async def set_enabled(self, flow_id: str, enabled: bool) -> FlowDocument:
        document = msgspec.structs.replace(self._existing(flow_id), enabled=enabled)
        self.rows[flow_id] = document
        return document


@dataclass
class MemoryPublisher:
    """Records what would be on the topic; ``down`` makes every publish fail like a dead
    broker."""

    topic: str = "fleet.devices.v1"
    sent: list[RegistryRecord] = field(default_factory=list)
    down: bool = False

    def publish(self, records: Sequence[RegistryRecord]) -> None:
        if self.down:
            raise KafkaUnavailable("registry records not acked: broker down")
        self.sent.extend(records)

    def latest(self) -> dict[str, bytes | None]:
        """The compacted view: last value per key (None = tombstone)."""
        return dict(self.sent)


class StaticCache:
    """A device cache fed by hand; ``caught_up`` is settable."""

    def __init__(self, *, caught_up: bool = True) -> None:
        self.caught_up = caught_up
        self.index = DeviceIndex()

    def identify(self, token: str) -> Device | None:
        return self.index.identify(token)

    def get(self, record_id: str) -> Device | None:
        return self.index.get(record_id)

    def follow(self, publisher: MemoryPublisher) -> None:
        for key, value in publisher.sent:
            self.index.apply(key.encode(), value)


def device_record(device_id: str, token: str, *, enabled: bool = True) -> bytes:
    """A device document as ``fleet.devices.v1`` carries it."""
    now = clock.now()
    device = Device(
        device_id=device_id,
        token_hash=hash_token(token),
        is_enabled=enabled,
        created_at=now,
        updated_at=now,
    )
    return encode_device(device)

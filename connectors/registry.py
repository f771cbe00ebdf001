"""The registries: Postgres is the record, a compacted topic tells every process.

Two registries share one implementation, :class:`Registry`, parameterised by the kind of record
(:class:`RecordKind`): devices (``fleet.devices.v1``, :class:`DeviceRegistry`; every API process
and worker follows it) and flows (``fleet.flows.v1``, :class:`FlowRegistry`; every worker follows
it). The kind-specific parts are only what a change means: a device's token (and the MQTT
broker's copy of it), a flow's definition check.

Every change is committed in Postgres first and then published (``acks=all``) before the caller
gets an answer. Publishing re-reads the committed row under the record's advisory lock
(:meth:`~connectors.postgres.registry.RegistryTable.publish_current`), so concurrent writers
publish in commit order and the last record on the topic is always the current row (or a
tombstone once it is gone).

Delivery is at-least-once. When Postgres committed but the broker did not ack,
:class:`NotPublished` is raised (the API answers 503): the change is stored, and any later
publish of that record carries it. A retried request publishes again whatever its outcome (a
repeated create that finds the record, a repeated delete that finds nothing), and
``fleetstream devices resync`` / ``fleetstream flows resync`` (run by ``setup``) republish every
record that differs from the topic and tombstone what the table no longer has
(:meth:`Registry.resync`). Repeats are harmless: consumers keep the latest document per key.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.registry import RegistryRecord
from connectors.postgres.devices import DeviceNotFound, DevicePage, DeviceQuery
from connectors.postgres.errors import DatabaseUnavailable
from connectors.postgres.flows import FlowNotFound, FlowPage
from connectors.postgres.registry import (
    Publish,
    PublishAll,
    PublishMany,
    RecordExists,
    RecordNotFound,
)
from schemas.devices import (
    DEVICE_ID_PATTERN,
    Device,
    DeviceChanges,
    NewDevice,
    encode_device,
    hash_token,
    new_token,
)
from schemas.errors import FleetError
from schemas.flows import FLOW_ID_PATTERN, FlowDefinition, FlowDocument, encode

D = TypeVar("D")
D_co = TypeVar("D_co", covariant=True)
T = TypeVar("T")


class NotPublished(FleetError):
    """Stored in Postgres, not confirmed on the registry topic; retrying the request helps."""

    retriable = True


class RegistryRecords(Protocol[D_co]):
    """What every registry needs of its system of record
    (:class:`~connectors.postgres.registry.RegistryTable` in production)."""

    async def delete(self, record_id: str, /) -> None: ...
    async def publish_current(self, record_id: str, publish: Publish[D_co], /) -> None: ...
    async def publish_all(self, publish: PublishAll[D_co], /) -> None: ...


class Publisher(Protocol):
    topic: str

    def publish(self, records: Sequence[RegistryRecord]) -> None: ...


@dataclass(frozen=True)
class RecordKind(Generic[D]):
    """What a registry holds: how a record is identified and encoded on its topic."""

    command: str
    """The CLI group that repairs the topic: ``fleetstream <command> resync``."""
    id_pattern: str
    id_of: Callable[[D], str]
    encode: Callable[[D], bytes]
    not_found: Callable[[str], RecordNotFound]


@dataclass(frozen=True)
class ResyncReport:
    published: int
    unchanged: int
    tombstoned: int


class Registry(Generic[D]):
    """Changes stored, then published; a record's publish; a resync of the whole topic."""

    def __init__(
        self, kind: RecordKind[D], store: RegistryRecords[D], publisher: Publisher
    ) -> None:
        self.kind = kind
        self._records = store
        self._publisher = publisher
        self._id = re.compile(kind.id_pattern)

    def could_exist(self, record_id: str) -> bool:
        """False for an id that cannot be stored (Postgres refuses e.g. U+0000)."""
        return self._id.match(record_id) is not None

    async def delete(self, record_id: str) -> None:
        await self._then_publish(record_id, self._records.delete(record_id))

    async def publish(self, record_id: str) -> None:
        """Publish the record's current row, or a tombstone when there is none."""
        await self._records.publish_current(record_id, self._publish_one)

    async def resync(self, on_topic: Mapping[str, D]) -> ResyncReport:
        """Make the topic match the table, given what the topic holds now (``on_topic``)."""
        counts: dict[str, int] = {}
        id_of = self.kind.id_of

        async def publish_all(records: Sequence[D]) -> None:
            in_table = {id_of(record) for record in records}
            changed = [r for r in records if on_topic.get(id_of(r)) != r]
            gone = sorted(set(on_topic) - in_table)
            documents: list[RegistryRecord] = [(id_of(r), self.kind.encode(r)) for r in changed]
            await self._send(documents + [(record_id, None) for record_id in gone])
            counts.update(
                published=len(changed), unchanged=len(records) - len(changed), tombstoned=len(gone)
            )

        await self._records.publish_all(publish_all)
        return ResyncReport(**counts)

    async def _then_publish(self, record_id: str, change: Awaitable[T]) -> T:
        """Await ``change`` (stored in Postgres), then publish the record as it is now."""
        if not self.could_exist(record_id):
            # Nothing to change or publish.
            if inspect.iscoroutine(change):
                change.close()
            raise self.kind.not_found(record_id)
        try:
            result = await change
        except (RecordNotFound, RecordExists):
            # A retry of a request whose publish failed lands here: publish what is stored.
            await self.publish(record_id)
            raise
        await self.publish(record_id)
        return result

    async def _publish_one(self, record_id: str, record: D | None) -> None:
        await self._send([(record_id, None if record is None else self.kind.encode(record))])

    async def _send(self, records: Sequence[RegistryRecord]) -> None:
        try:
            await asyncio.to_thread(self._publisher.publish, records)
        except KafkaUnavailable as exc:
            raise NotPublished(
                f"the change is stored in Postgres but {self._publisher.topic} did not confirm "
                f"it ({exc}); retry the request, or run `fleetstream {self.kind.command} resync`"
            ) from exc


# -- devices ---------------------------------------------------------------------------------

DEVICES: RecordKind[Device] = RecordKind(
    command="devices",
    id_pattern=DEVICE_ID_PATTERN,
    id_of=lambda device: device.device_id,
    encode=encode_device,
    not_found=DeviceNotFound,
)


class DeviceRecords(RegistryRecords[Device], Protocol):
    """The system of record; :class:`connectors.postgres.devices.DeviceStore` in production."""

    async def create(self, new: NewDevice, token_hash: str, /) -> Device: ...
    async def create_many(self, devices: Sequence[tuple[NewDevice, str]], /) -> list[str]: ...
    async def publish_current_many(
        self, record_ids: Sequence[str], publish: PublishMany[Device], /
    ) -> None: ...
    async def get(self, device_id: str, /) -> Device | None: ...
    async def list(self, query: DeviceQuery, /) -> DevicePage: ...
    async def update(self, device_id: str, changes: DeviceChanges, /) -> Device: ...
    async def set_token(self, device_id: str, token_hash: str, /) -> Device: ...
    async def update_own_metadata(self, device_id: str, metadata: dict[str, Any], /) -> Device: ...
    async def ping(self, timeout_s: float = 2.0) -> bool: ...


class Credentials(Protocol):
    """Where a device's plain token goes besides its hash (the MQTT broker's password store).

    Called after the change is committed and published: the plain token exists only now."""

    async def set_token(self, device: Device, token: str) -> None: ...


class CredentialsNotSet(NotPublished):
    """Stored and published, but the MQTT broker did not take the device's password."""


@dataclass(frozen=True)
class HashedToken:
    """A token known only by its SHA-256 hex, as another registry stored it (seed 004's
    ``token_hash``): the imported device keeps its token, which is never seen here."""

    sha256: str


ImportToken = str | HashedToken | None
"""An imported device's token: plain, known by its hash, or ``None`` for a random one."""


@dataclass(frozen=True)
class ImportResult:
    """A bulk import's outcome: the devices it registered with their plain tokens (to show
    once; ``None`` for a device imported with its token's hash), and the ids that were
    registered already (left as they were)."""

    created: list[tuple[str, str | None]]
    existing: list[str]


class ImportNotPublished(NotPublished):
    """A bulk import stored in Postgres, not confirmed on the registry topic (or, for
    ``CredentialsNotSet``, in the broker). ``result`` keeps the created devices' tokens, which
    exist nowhere else: a retry lists those devices as existing (and publishes them)."""

    def __init__(self, message: str, result: ImportResult) -> None:
        super().__init__(message)
        self.result = result


class DeviceRegistry(Registry[Device]):
    def __init__(
        self, store: DeviceRecords, publisher: Publisher, credentials: Credentials | None = None
    ) -> None:
        super().__init__(DEVICES, store, publisher)
        self.store = store
        self._credentials = credentials

    async def get(self, device_id: str) -> Device | None:
        if not self.could_exist(device_id):
            return None
        return await self.store.get(device_id)

    async def list(self, query: DeviceQuery) -> DevicePage:
        return await self.store.list(query)

    async def create(self, new: NewDevice, token: str | None = None) -> tuple[Device, str]:
        """Register ``new``; returns the device and its plain token (to show once)."""
        token = token or new_token()
        device = await self._then_publish(new.device_id, self.store.create(new, hash_token(token)))
        await self._set_credentials(device, token)
        return device, token

    async def create_many(self, items: Sequence[tuple[NewDevice, ImportToken]]) -> ImportResult:
        """Register many devices with one insert and one batched publish (the import route and
        ``fleetstream devices import``). Ids must be distinct (the caller checks).

        Devices already registered are left as they are and listed in ``existing``; every id is
        published as stored, so re-running an import after a failure also publishes what the
        failed run stored. Raises ``TokenInUse`` (nothing stored) or
        :class:`ImportNotPublished` (stored, not confirmed; carries the tokens).

        A device imported with a :class:`HashedToken` gets no MQTT broker password (the broker
        takes only plain ones): the MQTT front, which checks the registry's hash, admits it.
        """
        tokens: dict[str, str | None] = {}
        rows: list[tuple[NewDevice, str]] = []
        for new, token in items:
            if isinstance(token, HashedToken):
                tokens[new.device_id] = None
                rows.append((new, token.sha256))
            else:
                plain = token or new_token()
                tokens[new.device_id] = plain
                rows.append((new, hash_token(plain)))
        created = set(await self.store.create_many(rows))
        ids = [new.device_id for new, _ in items]
        result = ImportResult(
            created=[(i, tokens[i]) for i in ids if i in created],
            existing=[i for i in ids if i not in created],
        )
        published: list[Device] = []

        async def publish(records: Sequence[tuple[str, Device | None]]) -> None:
            published.extend(r for _, r in records if r is not None and r.device_id in created)
            await self._send([(i, None if r is None else self.kind.encode(r)) for i, r in records])

        try:
            await self.store.publish_current_many(ids, publish)
            for device in published:
                if (known := tokens[device.device_id]) is not None:
                    await self._set_credentials(device, known)
        except (NotPublished, DatabaseUnavailable) as exc:
            raise ImportNotPublished(str(exc), result) from exc
        return result

    async def update(self, device_id: str, changes: DeviceChanges) -> Device:
        return await self._then_publish(device_id, self.store.update(device_id, changes))

    async def update_own_metadata(self, device_id: str, metadata: dict[str, Any]) -> Device:
        """The device's own metadata update (seed 002): the operator's keys are kept, and
        ``OperatorMetadata`` is raised, nothing stored, when it tries to change one."""
        change = self.store.update_own_metadata(device_id, metadata)
        return await self._then_publish(device_id, change)

    async def rotate_token(self, device_id: str, token: str | None = None) -> tuple[Device, str]:
        token = token or new_token()
        device = await self._then_publish(
            device_id, self.store.set_token(device_id, hash_token(token))
        )
        await self._set_credentials(device, token)
        return device, token

    async def _set_credentials(self, device: Device, token: str) -> None:
        if self._credentials is None:
            return
        try:
            await self._credentials.set_token(device, token)
        except FleetError as exc:
            raise CredentialsNotSet(
                f"device {device.device_id} is stored, but the MQTT broker did not take its "
                f"token ({exc}); rotate the token to try again"
            ) from exc


# -- flows -----------------------------------------------------------------------------------

FLOWS: RecordKind[FlowDocument] = RecordKind(
    command="flows",
    id_pattern=FLOW_ID_PATTERN,
    id_of=lambda document: document.flow_id,
    encode=encode,
    not_found=FlowNotFound,
)


class FlowRecords(RegistryRecords[FlowDocument], Protocol):
    """The system of record; :class:`connectors.postgres.flows.FlowStore` in production."""

    async def create(
        self, flow_id: str, definition: FlowDefinition, enabled: bool = True, /
    ) -> FlowDocument: ...
    async def get(self, flow_id: str, version: int | None = None, /) -> FlowDocument | None: ...
    async def list(
        self, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
    ) -> FlowPage: ...
    async def update(self, flow_id: str, definition: FlowDefinition, /) -> FlowDocument: ...
    async def set_enabled(self, flow_id: str, enabled: bool, /) -> FlowDocument: ...


DefinitionCheck = Callable[[str, FlowDefinition], None]
"""Raises ``ValidationFailure`` for a definition a worker could not run (the flow engine's
``check_definition``): every definition is checked before it is stored, so a worker never
receives a flow it cannot run."""


class FlowRegistry(Registry[FlowDocument]):
    def __init__(self, store: FlowRecords, publisher: Publisher, check: DefinitionCheck) -> None:
        super().__init__(FLOWS, store, publisher)
        self.store = store
        self._check = check

    async def get(self, flow_id: str, version: int | None = None) -> FlowDocument | None:
        if not self.could_exist(flow_id):
            return None
        return await self.store.get(flow_id, version)

    async def list(
        self, *, enabled: bool | None = None, limit: int = 100, offset: int = 0
    ) -> FlowPage:
        return await self.store.list(enabled=enabled, limit=limit, offset=offset)

    async def create(
        self, flow_id: str, definition: FlowDefinition, enabled: bool = True
    ) -> FlowDocument:
        await self._checked(flow_id, definition)
        return await self._then_publish(flow_id, self.store.create(flow_id, definition, enabled))

    async def update(self, flow_id: str, definition: FlowDefinition) -> FlowDocument:
        """Store ``definition`` as the flow's next version; workers swap to it."""
        await self._checked(flow_id, definition)
        return await self._then_publish(flow_id, self.store.update(flow_id, definition))

    async def set_enabled(self, flow_id: str, enabled: bool) -> FlowDocument:
        return await self._then_publish(flow_id, self.store.set_enabled(flow_id, enabled))

    async def _checked(self, flow_id: str, definition: FlowDefinition) -> None:
        """The check, in a worker thread: it compiles every expression of the definition (up to
        ~20 ms each, 32 nodes of up to 64), which would hold the event loop. Each CEL compile
        holds the GIL, but only for its own expression; between them the loop gets its turn."""
        await asyncio.to_thread(self._check, flow_id, definition)

"""What ``fleetstream devices`` and ``fleetstream flows`` share: a registry opened on Postgres
and its topic, an action run on it, ``resync``, errors and JSON output.

Both talk to Postgres and the registry topic directly (no API needed), through the same
:class:`~connectors.registry.Registry` as the admin API, so a change made here reaches every
process the same way. ``fleetstream setup`` (:mod:`cli.runner`) runs :meth:`RegistryCommands.resync`
of both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec
import typer

from cli.console import confirm, fail, operator_errors
from connectors.kafka.compacted import DocumentIndex, read_to_end
from connectors.kafka.device_cache import DeviceIndex
from connectors.kafka.flow_cache import FlowIndex
from connectors.kafka.registry import RegistryPublisher
from connectors.mqtt.credentials import device_credentials
from connectors.postgres.devices import DeviceStore
from connectors.postgres.flows import FlowStore
from connectors.postgres.pool import create_pool
from connectors.registry import DeviceRegistry, FlowRegistry, Registry, ResyncReport
from schemas.errors import ValidationFailure
from schemas.settings import Settings, get_settings
from streams.flow_engine.engine import check_definition

R = TypeVar("R", bound=Registry[Any])
T = TypeVar("T")


@dataclass(frozen=True)
class RegistryCommands(Generic[R]):
    """One registry as the CLI opens it."""

    noun: str
    """``device``, ``flow``: what its messages call a record."""
    topic: Callable[[Settings], str]
    index: Callable[[], DocumentIndex[Any]]
    """An empty index of the topic's documents (what ``resync`` compares the table with)."""
    open: Callable[[asyncpg.Pool, RegistryPublisher, Settings], R]

    def run(self, action: Callable[[R], Awaitable[T]]) -> T:
        """``action`` on the registry; operator errors print one line and exit 1, a definition
        that does not validate exits 2 naming the field."""
        with operator_errors():
            try:
                return asyncio.run(self._with_registry(get_settings(), action))
            except ValidationFailure as exc:
                fail(f"invalid {self.noun}: {describe_errors(exc)}", 2)

    def delete(self, record_id: str, *, yes: bool) -> None:
        """The ``delete`` command: asks first unless ``yes``."""
        confirm(f"delete {self.noun} {record_id}", [f"{self.noun} {record_id}"], yes=yes)
        self.run(lambda registry: registry.delete(record_id))
        typer.echo(f"deleted {record_id}")

    def resync(self, settings: Settings) -> ResyncReport:
        """Make the topic match Postgres: publish what differs, tombstone what is gone."""
        with operator_errors():
            kafka = settings.kafka
            on_topic = read_to_end(kafka.bootstrap_servers, self.topic(settings), self.index())
            return asyncio.run(
                self._with_registry(
                    settings, lambda registry: registry.resync(on_topic.documents())
                )
            )

    def describe(self, report: ResyncReport) -> str:
        return (
            f"{self.noun} registry: {report.published} published, {report.unchanged} unchanged, "
            f"{report.tombstoned} tombstoned"
        )

    def print_resync(self, as_json: bool) -> None:
        """The ``resync`` command."""
        report = self.resync(get_settings())
        if as_json:
            typer.echo(json.dumps(dataclasses.asdict(report)))
        else:
            typer.echo(self.describe(report))

    async def _with_registry(self, settings: Settings, action: Callable[[R], Awaitable[T]]) -> T:
        pool = await create_pool(settings.postgres, min_size=0, max_size=2)
        publisher = RegistryPublisher(
            settings.kafka.bootstrap_servers,
            self.topic(settings),
            delivery_timeout_ms=settings.kafka.delivery_timeout_ms,
        )
        try:
            return await action(self.open(pool, publisher, settings))
        finally:
            publisher.close()
            await pool.close()


DEVICES: RegistryCommands[DeviceRegistry] = RegistryCommands(
    noun="device",
    topic=lambda settings: settings.topics.devices,
    index=DeviceIndex,
    open=lambda pool, publisher, settings: DeviceRegistry(
        DeviceStore(pool), publisher, device_credentials(settings.mqtt)
    ),
)

FLOWS: RegistryCommands[FlowRegistry] = RegistryCommands(
    noun="flow",
    topic=lambda settings: settings.topics.flows,
    index=FlowIndex,
    open=lambda pool, publisher, _settings: FlowRegistry(
        FlowStore(pool), publisher, check_definition
    ),
)


def describe_errors(exc: ValidationFailure) -> str:
    return "; ".join(error.describe() for error in exc.errors)


def document_view(document: Any, *hidden: str) -> dict[str, Any]:
    """``document`` as JSON-ready builtins, without its schema version and ``hidden`` fields."""
    view: dict[str, Any] = msgspec.to_builtins(document)
    for key in ("schema_version", *hidden):
        view.pop(key, None)
    return view


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))

"""The schema registry: register the Avro contracts, find their ids (Confluent REST API).

Speaks the Confluent Schema Registry API, which Apicurio serves under ``/apis/ccompat/v7``
(the local stack) and Confluent/Karapace at their root. Subjects follow the TopicNameStrategy
every Kafka tool assumes: ``<topic>-value``. ``fleetstream setup`` registers every contract
with the BACKWARD compatibility level (a new version must read what the previous one wrote);
the worker registers-or-finds the id of what it produces when it starts (registering a schema
the subject already has returns its id), so it never writes a schema the registry does not
know, and stops with :class:`SchemaRegistryError` when the registry cannot be reached.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from connectors.tls import registry_verify
from schemas.avro_codec import CONTRACTS, AvroEncoder, Contract, schema_json
from schemas.contract_wire import WIRE
from schemas.errors import FleetError
from schemas.settings import Settings, TopicSettings

__all__ = [
    "COMPATIBILITY",
    "SchemaRegistryClient",
    "SchemaRegistryError",
    "client_for",
    "contract_topics",
    "encoder_for",
    "install_contracts",
    "register_contracts",
    "subject_for",
]

COMPATIBILITY: Final = "BACKWARD"
_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryError(FleetError):
    """The registry refused a request (``status``: its HTTP status) or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def contract_topics(topics: TopicSettings) -> dict[Contract, str]:
    """Each Avro contract and the topic (from the settings) whose values it describes."""
    return {
        "readings": topics.readings,
        "device-status": topics.device_status,
        "alerts": topics.alerts,
        "readings-1m": topics.readings_1m,
        "deadletter": topics.deadletter,
    }


def subject_for(topic: str) -> str:
    """The value subject of ``topic`` (TopicNameStrategy)."""
    return f"{topic}-value"


@dataclass(frozen=True)
class SchemaRegistryClient:
    """A small synchronous client of the parts of the Confluent API we use."""

    url: str
    timeout_s: float = 5.0
    verify: ssl.SSLContext | bool = True
    """httpx's certificate check (``connectors.tls.registry_verify``)."""

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its global id.

        Two workers starting at once may both register the first version of a subject:
        Apicurio then refuses the second with 409 ("artifact already exists") instead of
        answering the id, which stopped a worker. A 409 is therefore answered by looking the
        schema up; only when the subject does not hold it (Confluent's 409: incompatible) is
        the refusal raised."""
        try:
            body = self._call("POST", f"/subjects/{subject}/versions", {"schema": schema})
        except SchemaRegistryError as exc:
            if exc.status != 409:
                raise
            schema_id = self.lookup(subject, schema)
            if schema_id is None:
                raise
            return schema_id
        return int(body["id"])

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of ``schema`` if ``subject`` has it, else None."""
        try:
            body = self._call("POST", f"/subjects/{subject}", {"schema": schema})
        except SchemaRegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return int(body["id"])

    def schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        return str(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])

    def versions(self, subject: str) -> list[int]:
        """The versions ``subject`` holds (empty: no such subject)."""
        try:
            return [int(v) for v in self._call("GET", f"/subjects/{subject}/versions")]
        except SchemaRegistryError as exc:
            if exc.status == 404:
                return []
            raise

    def delete_subject(self, subject: str) -> bool:
        """Delete ``subject`` and its versions for good; False if it did not exist."""
        if not self.versions(subject):
            return False
        self._call("DELETE", f"/subjects/{subject}")
        self._call("DELETE", f"/subjects/{subject}?permanent=true")
        return True

    def set_compatibility(self, subject: str, level: str = COMPATIBILITY) -> None:
        self._call("PUT", f"/config/{subject}", {"compatibility": level})

    def compatibility(self, subject: str) -> str:
        body = self._call("GET", f"/config/{subject}")
        return str(body.get("compatibilityLevel") or body.get("compatibility"))

    def is_compatible(self, subject: str, schema: str) -> bool:
        """Whether ``schema`` may become the next version of ``subject`` under its level."""
        path = f"/compatibility/subjects/{subject}/versions/latest"
        return bool(self._call("POST", path, {"schema": schema})["is_compatible"])

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        url = self.url.rstrip("/") + path
        content = None if body is None else json.dumps(body)
        headers = {"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE}
        try:
            response = httpx.request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=self.timeout_s,
                verify=self.verify,
            )
        except httpx.HTTPError as exc:
            raise SchemaRegistryError(
                f"schema registry at {self.url} cannot be reached ({type(exc).__name__}: {exc}); "
                "is it running? (`fleetstream stack up apicurio`, FLEET_SCHEMA_REGISTRY__URL)"
            ) from exc
        if response.status_code >= 400 or _apicurio_error(response):
            raise SchemaRegistryError(
                f"schema registry refused {method} {path}: HTTP {response.status_code} "
                f"{response.text[:500]}",
                response.status_code,
            )
        return response.json()


def _apicurio_error(response: httpx.Response) -> bool:
    # Apicurio's ccompat API answers some refusals with 200 and an error body.
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error_code" in body and "id" not in body


def client_for(settings: Settings) -> SchemaRegistryClient:
    registry = settings.schema_registry
    return SchemaRegistryClient(registry.url, registry.timeout_s, registry_verify(registry))


def register_contracts(settings: Settings) -> dict[str, int]:
    """Set BACKWARD on every Avro contract's subject and register its current schema (setup);
    empty the subject of a topic kept in JSON (``FLEET_SCHEMA_REGISTRY__JSON_CONTRACTS``), so no
    registry-aware consumer reads its JSON as Avro.

    Returns subject -> schema id (Avro subjects only). A schema the subject's level refuses
    raises SchemaRegistryError naming the subject.
    """
    client = client_for(settings)
    ids: dict[str, int] = {}
    for contract, topic in contract_topics(settings.topics).items():
        subject = subject_for(topic)
        if contract in settings.schema_registry.json_contracts:
            client.delete_subject(subject)
            continue
        client.set_compatibility(subject)
        ids[subject] = client.register(subject, schema_json(contract))
    return ids


def install_contracts(settings: Settings) -> dict[Contract, int]:
    """Make this process write its analytics topics as the settings say (``schemas.
    contract_wire``): register-or-find the id of every Avro contract but readings (whose
    encoder ``encoder_for`` gives), retire the subject of each topic kept in JSON, and read
    unknown schema ids from the registry. Returns contract -> schema id of the Avro ones.
    Raises SchemaRegistryError when the registry cannot be reached."""
    client = client_for(settings)
    encoders: dict[Contract, AvroEncoder] = {}
    for contract, topic in contract_topics(settings.topics).items():
        subject = subject_for(topic)
        if contract == "readings":
            continue
        if contract in settings.schema_registry.json_contracts:
            client.delete_subject(subject)
            continue
        encoders[contract] = AvroEncoder(contract, client.register(subject, schema_json(contract)))
    WIRE.install(encoders, client.schema)
    return {contract: encoder.schema_id for contract, encoder in encoders.items()}


def encoder_for(settings: Settings, contract: Contract) -> AvroEncoder:
    """An encoder for ``contract`` on its topic, with the id the registry gives its schema."""
    if contract not in CONTRACTS:
        raise KeyError(contract)
    topic = contract_topics(settings.topics)[contract]
    schema_id = client_for(settings).register(subject_for(topic), schema_json(contract))
    return AvroEncoder(contract, schema_id)

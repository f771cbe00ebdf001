"""Request and response bodies of the device routes (pydantic, for FastAPI and OpenAPI).

Constraints come from :mod:`schemas.devices`, and every body is converted into that module's
msgspec structs before use, so the API, the CLI and the topic share one set of rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from connectors.registry import HashedToken, ImportToken
from schemas.devices import (
    DEVICE_ID_PATTERN,
    LABEL_PATTERN,
    MAX_TAGS,
    NAME_PATTERN,
    TIMEOUT_MAX_S,
    TOKEN_PATTERN,
    Device,
    check_metadata,
)
from schemas.readings import UUID_PATTERN

TOKEN_SHA256_PATTERN = r"^[0-9a-fA-F]{64}\Z"  # noqa: S105 - a pattern, not a secret
"""A stored token hash as imported: 64 hex digits, either case (stored lower case)."""


def _metadata(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    check_metadata(value)
    return value


DeviceIdField = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, examples=["esp32-lobby-01"])]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Tags = Annotated[list[Label], Field(max_length=MAX_TAGS)]
Metadata = Annotated[
    dict[str, JsonValue],
    AfterValidator(_metadata),
    Field(description="free JSON object (location, firmware...), at most 8 KiB"),
]
TimeoutS = Annotated[int, Field(ge=1, le=TIMEOUT_MAX_S)]
TokenPlain = Annotated[
    str,
    Field(
        pattern=TOKEN_PATTERN,
        description="16-256 printable ASCII characters; omit it to get a random token",
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


class DeviceCreate(_Body):
    """Seed 004's body (``device_id``, ``token_plain``, ``point_id``, ``register_id``) plus the
    registry's own fields. ``point_id``/``register_id`` are kept in ``metadata``."""

    device_id: DeviceIdField
    token_plain: TokenPlain | None = None
    name: Name | None = None
    profile: Label | None = None
    tags: Tags = []
    metadata: Metadata = {}
    inactivity_timeout_s: TimeoutS | None = None
    is_enabled: bool = True
    point_id: Annotated[str, Field(pattern=UUID_PATTERN)] | None = None
    register_id: Annotated[str, Field(pattern=UUID_PATTERN)] | None = None

    def registry_fields(self) -> dict[str, Any]:
        """The fields of :class:`schemas.devices.NewDevice`."""
        fields = self.model_dump(exclude={"token_plain", "point_id", "register_id"})
        seed_ids = {"point_id": self.point_id, "register_id": self.register_id}
        fields["metadata"] = {
            **self.metadata,
            **{key: value for key, value in seed_ids.items() if value is not None},
        }
        return fields


class DeviceImportItem(DeviceCreate):
    """One device of an import: the create body, or, instead of ``token_plain``, the SHA-256
    of the device's token as another registry stored it (seed 004's ``token_hash``), so the
    device keeps the token it has."""

    token_sha256: (
        Annotated[
            str,
            Field(
                pattern=TOKEN_SHA256_PATTERN,
                description="SHA-256 of the device's token, 64 hex digits (seed 004's token_hash); "
                "the device keeps its token",
            ),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_token(self) -> DeviceImportItem:
        if self.token_plain is not None and self.token_sha256 is not None:
            raise ValueError("token_plain and token_sha256 exclude each other")
        return self

    def token(self) -> ImportToken:
        """What the registry takes: the plain token, its hash, or None (a random one)."""
        if self.token_sha256 is not None:
            return HashedToken(self.token_sha256.lower())
        return self.token_plain

    def registry_fields(self) -> dict[str, Any]:
        fields = super().registry_fields()
        fields.pop("token_sha256", None)
        return fields


IMPORT_MAX_DEVICES = 10_000
"""Devices per ``POST /api/v1/admin/devices/import``; a bigger fleet goes in several requests."""
IMPORT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""The import route's body limit (413 beyond): 10,000 devices of ~1.6 KB each."""


class DeviceImport(_Body):
    """A bulk registration: each item is the body of ``POST /api/v1/admin/devices``."""

    devices: Annotated[list[DeviceImportItem], Field(min_length=1, max_length=IMPORT_MAX_DEVICES)]


class ImportedDevice(BaseModel):
    device_id: str
    token: str | None = Field(
        description="the device's token; shown this once, stored only hashed (null: imported "
        "with token_sha256, the device keeps its own)"
    )


class ImportOutcome(BaseModel):
    """What an import registered (with tokens) and what was registered already (untouched)."""

    created: list[ImportedDevice]
    existing: list[str]

    @classmethod
    def of(cls, created: list[tuple[str, str | None]], existing: list[str]) -> ImportOutcome:
        devices = [ImportedDevice(device_id=i, token=token) for i, token in created]
        return cls(created=devices, existing=existing)


class DevicePatch(_Body):
    """Fields to change; a field left out stays as it is, ``null`` clears a nullable one."""

    is_enabled: bool | None = None
    name: Name | None = None
    profile: Label | None = None
    tags: Tags | None = None
    metadata: Metadata | None = None
    inactivity_timeout_s: TimeoutS | None = None

    def changes(self) -> dict[str, Any]:
        """The fields that were sent; :class:`schemas.devices.DeviceChanges` refuses ``null``
        where a field cannot be cleared (``is_enabled``, ``tags``, ``metadata``)."""
        return self.model_dump(include=self.model_fields_set)


class TokenRotation(_Body):
    token_plain: TokenPlain | None = None


class MetadataUpdate(_Body):
    """Seed 002's ``POST /api/v1/devices/metadata`` body; the metadata replaces the old one."""

    device_id: DeviceIdField
    metadata: Metadata


class DeviceOut(BaseModel):
    """A device as the API shows it; the token hash stays inside the system."""

    device_id: str
    name: str | None
    profile: str | None
    tags: list[str]
    metadata: dict[str, Any]
    is_enabled: bool
    inactivity_timeout_s: int | None
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(
            device_id=device.device_id,
            name=device.name,
            profile=device.profile,
            tags=device.tags,
            metadata=device.metadata,
            is_enabled=device.is_enabled,
            inactivity_timeout_s=device.inactivity_timeout_s,
            created_at=device.created_at,
            updated_at=device.updated_at,
            last_seen_at=device.last_seen_at,
        )


class DeviceWithToken(DeviceOut):
    token: str = Field(description="the device's token; shown this once, stored only hashed")

    @classmethod
    def with_token(cls, device: Device, token: str) -> DeviceWithToken:
        return cls(**DeviceOut.of(device).model_dump(), token=token)


class DeviceList(BaseModel):
    items: list[DeviceOut]
    total: int
    limit: int
    offset: int

"""The device registry contract: the device document and device credentials.

A device document is what Postgres stores and what ``fleet.devices.v1`` carries (key: the
device_id, value: :func:`encode_device`; a tombstone when the device is deleted). It holds the
SHA-256 hex of the device's token so that every API process can authenticate from the topic;
the plain token exists only in the answer that created it, never in a log, a row or a record.

Tokens: ``secrets.token_urlsafe(32)`` (256 random bits) unless an operator supplies one (seed
004's ``token_plain``). They are compared as SHA-256 digests with ``hmac.compare_digest``.
Decoding a document ignores unknown fields, so a newer writer can add fields without breaking
older readers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from schemas.errors import FleetError
from schemas.readings import DEVICE_ID_PATTERN, DeviceId

__all__ = [
    "DEVICE_ID_PATTERN",
    "LABEL_PATTERN",
    "MAX_TAGS",
    "METADATA_MAX_BYTES",
    "NAME_MAX",
    "NAME_PATTERN",
    "OPERATOR_METADATA_KEYS",
    "TIMEOUT_MAX_S",
    "TOKEN_HASH_PATTERN",
    "TOKEN_PATTERN",
    "Device",
    "DeviceChanges",
    "NewDevice",
    "OperatorMetadata",
    "check_metadata",
    "decode_device",
    "device_own_metadata",
    "encode_device",
    "hash_token",
    "new_token",
    "token_matches",
]

SCHEMA_VERSION = 1
TOKEN_PATTERN = r"^[\x21-\x7e]{16,256}\Z"  # noqa: S105 - a pattern, not a secret
"""An operator-supplied token: 16-256 printable ASCII characters, no spaces (header-safe)."""
TOKEN_HASH_PATTERN = r"^[0-9a-f]{64}\Z"  # noqa: S105 - a pattern, not a secret
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}\Z"
"""Profiles and tags: 1-64 characters, starting alphanumeric."""
NAME_MAX = 200
NAME_PATTERN = rf"^[^\x00-\x1f\x7f]{{1,{NAME_MAX}}}\Z"
"""A display name: 1-200 characters, no control characters."""
MAX_TAGS = 32
METADATA_MAX_BYTES = 8192
METADATA_MAX_DEPTH = 8
TIMEOUT_MAX_S = 30 * 24 * 3600

OPERATOR_METADATA_KEYS = ("point_id", "register_id")
"""Metadata keys that only an operator sets: seed 004's placement of an audio device, which
its audio chunks must match (``api.media.audio.check_placement``)."""

_KEY_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_VALUE_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, LF, CR allowed

TokenHash = Annotated[str, Meta(pattern=TOKEN_HASH_PATTERN)]
Label = Annotated[str, Meta(pattern=LABEL_PATTERN)]
Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
Tags = Annotated[list[Label], Meta(max_length=MAX_TAGS)]
TimeoutS = Annotated[int, Meta(ge=1, le=TIMEOUT_MAX_S)]
Token = Annotated[str, Meta(pattern=TOKEN_PATTERN)]


def new_token() -> str:
    """A fresh random device token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """True when ``token`` hashes to ``token_hash``; constant time in the digest comparison."""
    return hmac.compare_digest(hash_token(token).encode(), token_hash.encode())


def check_metadata(metadata: dict[str, Any]) -> None:
    """Refuse metadata Postgres or our readers cannot take; ``ValueError`` names the key.

    A JSON object of at most ``METADATA_MAX_BYTES`` encoded and ``METADATA_MAX_DEPTH`` levels;
    no control characters in keys, none but tab/LF/CR in strings (jsonb refuses U+0000), no
    NaN or infinities.
    """
    _check_value(metadata, "metadata", 1)
    size = len(msgspec.json.encode(metadata))
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is {size} bytes encoded; the limit is {METADATA_MAX_BYTES}")


def _check_value(value: Any, where: str, depth: int) -> None:
    if depth > METADATA_MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {METADATA_MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key, where)
            _check_value(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]", depth + 1)
    else:
        _check_scalar(value, where)


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str) or not key or len(key) > 64:
        raise ValueError(f"{where}: keys are strings of 1-64 characters")
    if _KEY_CONTROL_RE.search(key):
        raise ValueError(f"{where}: a key contains a control character")


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, str) and _VALUE_CONTROL_RE.search(value):
        raise ValueError(f"{where}: contains a control character")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: NaN and infinities are not JSON")
    if value is not None and not isinstance(value, str | bool | int | float):
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


class OperatorMetadata(FleetError):
    """A device's own metadata update tried to set, change or clear an operator's key."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"metadata.{key} is set by the operator (the admin API); a device cannot change it"
        )
        self.key = key


def device_own_metadata(stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """The metadata a device's own update stores: ``sent``, with the operator's keys
    (:data:`OPERATOR_METADATA_KEYS`) as they are stored.

    Seed 002 firmware replaces its metadata without knowing about those keys, so leaving one
    out keeps it. Sending one with another value (``null``, a different id, or one where the
    operator set none) raises :class:`OperatorMetadata`: the device's credentials must not move
    it to another point or register, and a silent refusal would let it believe it had.
    """
    kept = dict(sent)
    for key in OPERATOR_METADATA_KEYS:
        if key in sent and not _same_id(sent[key], stored.get(key)):
            raise OperatorMetadata(key)
        kept.pop(key, None)
        if key in stored:
            kept[key] = stored[key]
    return kept


def _same_id(sent: Any, stored: Any) -> bool:
    """Equal, UUIDs as text compared without case (as the audio route compares them)."""
    if isinstance(sent, str) and isinstance(stored, str):
        return sent.lower() == stored.lower()
    return bool(sent == stored) and type(sent) is type(stored)


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """A registered device, as stored in Postgres and published on ``fleet.devices.v1``."""

    device_id: DeviceId
    token_hash: TokenHash
    is_enabled: bool = True
    name: str | None = None
    profile: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    inactivity_timeout_s: int | None = None
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = None
    schema_version: int = SCHEMA_VERSION


class NewDevice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an operator registers; the token is hashed before anything stores it."""

    device_id: DeviceId
    name: Name | None = None
    profile: Label | None = None
    tags: Tags = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    inactivity_timeout_s: TimeoutS | None = None
    is_enabled: bool = True

    def __post_init__(self) -> None:
        check_metadata(self.metadata)


class DeviceChanges(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A partial update: ``UNSET`` leaves a field alone, ``None`` clears a nullable one."""

    name: Name | msgspec.UnsetType | None = msgspec.UNSET
    profile: Label | msgspec.UnsetType | None = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    inactivity_timeout_s: TimeoutS | msgspec.UnsetType | None = msgspec.UNSET
    is_enabled: bool | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.metadata, msgspec.UnsetType):
            check_metadata(self.metadata)

    def as_dict(self) -> dict[str, Any]:
        """The fields that were set, by name."""
        return {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if getattr(self, name) is not msgspec.UNSET
        }


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Device)


def encode_device(device: Device) -> bytes:
    return _encoder.encode(device)


def decode_device(data: bytes) -> Device:
    """Decode a registry record value; raises ``msgspec.ValidationError``/``DecodeError``."""
    return _decoder.decode(data)

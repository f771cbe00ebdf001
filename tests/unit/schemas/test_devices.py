"""Device credentials and the device document contract."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from schemas.devices import (
    Device,
    DeviceChanges,
    NewDevice,
    check_metadata,
    decode_device,
    encode_device,
    hash_token,
    new_token,
    token_matches,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_tokens_are_random_url_safe_and_long() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(token) == 43 for token in tokens)
    assert all(set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
               for token in tokens)  # fmt: skip


def test_the_stored_hash_is_sha256_hex_and_only_the_right_token_matches() -> None:
    token = new_token()
    stored = hash_token(token)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token_matches(token, stored)
    assert not token_matches(token + "x", stored)
    assert not token_matches(token[:-1], stored)
    assert not token_matches("", stored)


@pytest.mark.parametrize(
    ("metadata", "complaint"),
    [
        ({"location": "hall\x00"}, "metadata.location: contains a control character"),
        ({"bad\nkey": 1}, "key contains a control character"),
        ({"": 1}, "keys are strings of 1-64"),
        ({"x": float("nan")}, "NaN"),
        ({"x": float("inf")}, "NaN and infinities"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}, "nested deeper"),
        ({"blob": "x" * 9000}, "bytes encoded"),
        ({"when": NOW}, "datetime is not a JSON value"),
    ],
)
def test_metadata_that_postgres_or_readers_cannot_take_is_refused(
    metadata: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_metadata(metadata)


def test_ordinary_metadata_passes() -> None:
    check_metadata({"location": {"building": "A", "floor": 2, "lat": 52.1}, "note": "line\n2"})


def test_new_device_validation_names_the_field() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.device_id"):
        msgspec.convert({"device_id": "bad id"}, NewDevice)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.tags\[1\]"):
        msgspec.convert({"device_id": "esp-1", "tags": ["ok", "not ok"]}, NewDevice)
    with pytest.raises(msgspec.ValidationError, match="control character"):
        msgspec.convert({"device_id": "esp-1", "metadata": {"a": "\x00"}}, NewDevice)
    with pytest.raises(msgspec.ValidationError, match="inactivity_timeout_s"):
        msgspec.convert({"device_id": "esp-1", "inactivity_timeout_s": 0}, NewDevice)


def test_changes_know_which_fields_were_set() -> None:
    changes = DeviceChanges(is_enabled=False, name=None)
    assert changes.as_dict() == {"is_enabled": False, "name": None}
    assert DeviceChanges().as_dict() == {}


def test_documents_round_trip_and_tolerate_fields_from_newer_writers() -> None:
    device = Device(
        device_id="esp-1",
        token_hash=hash_token("t" * 20),
        tags=["lobby"],
        metadata={"floor": 2},
        created_at=NOW,
        updated_at=NOW,
    )
    assert decode_device(encode_device(device)) == device
    newer = msgspec.json.decode(encode_device(device))
    newer["firmware"] = "2.0"
    assert decode_device(msgspec.json.encode(newer)) == device


def test_a_document_never_carries_a_plain_token() -> None:
    token = new_token()
    device = Device(device_id="esp-1", token_hash=hash_token(token), created_at=NOW, updated_at=NOW)
    assert token.encode() not in encode_device(device)

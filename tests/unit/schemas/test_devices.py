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
    OperatorMetadata,
    check_metadata,
    decode_device,
    device_own_metadata,
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


POINT = "5d6f7a1e-0b8c-4e2f-9a31-7c1d2e3f4a5b"
REGISTER = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PINNED = {"point_id": POINT, "register_id": REGISTER, "floor": 2}


def test_a_devices_own_metadata_keeps_the_operators_ids_it_leaves_out() -> None:
    kept = device_own_metadata(PINNED, {"firmware": "1.2"})
    assert kept == {"firmware": "1.2", "point_id": POINT, "register_id": REGISTER}
    assert device_own_metadata(PINNED, {}) == {"point_id": POINT, "register_id": REGISTER}
    # sending them back unchanged (a UUID in other case) is no change: the stored text stays
    echoed = device_own_metadata(PINNED, {"point_id": POINT.upper(), "register_id": REGISTER})
    assert echoed == {"point_id": POINT, "register_id": REGISTER}
    # nothing pinned: the rest is replaced as sent, and no id appears
    assert device_own_metadata({"floor": 2}, {"firmware": "1.2"}) == {"firmware": "1.2"}
    assert device_own_metadata({}, {"point_id": None}) == {}


@pytest.mark.parametrize(
    ("stored", "sent", "key"),
    [
        (PINNED, {"point_id": None}, "point_id"),  # clearing
        (PINNED, {"register_id": "00000000-0000-4000-8000-000000000000"}, "register_id"),
        (PINNED, {"point_id": 7}, "point_id"),
        ({"floor": 2}, {"point_id": POINT}, "point_id"),  # pinning itself
        ({"point_id": 1}, {"point_id": True}, "point_id"),  # equal in Python, not in JSON
    ],
)
def test_a_devices_own_metadata_cannot_set_change_or_clear_an_operators_id(
    stored: dict[str, Any], sent: dict[str, Any], key: str
) -> None:
    with pytest.raises(OperatorMetadata) as refused:
        device_own_metadata(stored, {"firmware": "1.2", **sent})
    assert refused.value.key == key
    assert f"metadata.{key}" in str(refused.value)

"""The registry cache's index (records and tombstones) and its catch-up bookkeeping."""

from __future__ import annotations

import pytest

from connectors.kafka import device_cache
from connectors.kafka.compacted import CatchUp
from connectors.kafka.device_cache import DeviceIndex
from schemas.devices import hash_token
from tests.unit.registry_fakes import device_record


def test_a_record_makes_the_device_known_by_id_and_by_token() -> None:
    index = DeviceIndex()
    index.apply(b"esp-1", device_record("esp-1", "token-one-0123456"))
    device = index.get("esp-1")
    assert device is not None and device.is_enabled
    identified = index.identify("token-one-0123456")
    assert identified is not None and identified.device_id == "esp-1"
    assert index.identify("token-two-0123456") is None


def test_a_newer_record_replaces_the_device_and_its_old_token() -> None:
    index = DeviceIndex()
    index.apply(b"esp-1", device_record("esp-1", "token-one-0123456"))
    index.apply(b"esp-1", device_record("esp-1", "token-two-0123456", enabled=False))
    assert index.identify("token-one-0123456") is None
    rotated = index.identify("token-two-0123456")
    assert rotated is not None and not rotated.is_enabled
    assert len(index) == 1


def test_a_tombstone_forgets_the_device_and_its_token() -> None:
    index = DeviceIndex()
    index.apply(b"esp-1", device_record("esp-1", "token-one-0123456"))
    index.apply(b"esp-2", device_record("esp-2", "token-two-0123456"))
    index.apply(b"esp-1", None)
    assert index.get("esp-1") is None
    assert index.identify("token-one-0123456") is None
    assert index.get("esp-2") is not None
    index.apply(b"esp-unknown", None)  # a tombstone for a key never seen is harmless
    assert len(index) == 1


def test_a_token_moved_to_another_device_stays_with_the_new_owner() -> None:
    index = DeviceIndex()
    index.apply(b"esp-1", device_record("esp-1", "shared-token-0123"))
    index.apply(b"esp-2", device_record("esp-2", "shared-token-0123"))
    index.apply(b"esp-1", device_record("esp-1", "other-token-01234"))
    owner = index.identify("shared-token-0123")
    assert owner is not None and owner.device_id == "esp-2"


def test_undecodable_or_mismatched_records_are_skipped_without_losing_state() -> None:
    index = DeviceIndex()
    index.apply(b"esp-1", device_record("esp-1", "token-one-0123456"))
    index.apply(b"esp-1", b"{not json")
    index.apply(b"esp-1", b'{"device_id": "esp-1"}')
    index.apply(b"esp-1", device_record("esp-9", "token-nine-012345"))
    index.apply(None, device_record("esp-1", "token-two-0123456"))
    device = index.get("esp-1")
    assert device is not None and device.token_hash == hash_token("token-one-0123456")
    assert index.identify("token-nine-012345") is None


def test_empty_partitions_need_no_reading() -> None:
    assert CatchUp.from_watermarks({0: (0, 0), 1: (5, 5)}).done


def test_caught_up_once_every_partition_is_read_to_its_start_high_watermark() -> None:
    catch_up = CatchUp.from_watermarks({0: (0, 3), 1: (0, 0), 2: (4, 10)})
    assert not catch_up.done
    catch_up.read(0, 1)
    catch_up.read(2, 9)
    assert not catch_up.done
    catch_up.read(0, 2)
    assert catch_up.done


def test_the_end_of_a_partition_counts_even_when_compaction_left_gaps() -> None:
    catch_up = CatchUp.from_watermarks({0: (0, 10)})
    catch_up.read(0, 4)
    catch_up.at_end(0)
    assert catch_up.done


def test_deletions_are_remembered_until_the_id_is_registered_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("connectors.kafka.device_cache.time.monotonic", lambda: clock[0])
    index = DeviceIndex()
    index.apply(b"esp-1", device_record("esp-1", "token-one-0123456"))
    index.apply(b"esp-2", device_record("esp-2", "token-two-0123456"))
    index.apply(b"esp-1", None)
    index.apply(b"esp-3", None)  # deleted before this reader saw it registered: still a deletion
    assert index.deleted(60) == ["esp-1", "esp-3"]

    index.apply(b"esp-3", device_record("esp-3", "token-three-012345"))
    clock[0] += 61
    index.apply(b"esp-2", None)
    assert index.deleted(60) == ["esp-2"]  # esp-1 is older than the window; esp-3 came back
    assert index.deleted(120) == ["esp-1", "esp-2"]


def test_the_deletions_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_cache, "DELETIONS_KEPT", 10)
    index = DeviceIndex()
    for n in range(11):
        index.apply(f"esp-{n}".encode(), None)
    assert index.deleted(3600) == [f"esp-{n}" for n in range(5, 11)]

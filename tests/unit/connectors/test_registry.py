"""The one registry implementation with both kinds of record: publish after commit, a failed
publish is a retriable NotPublished naming the kind's resync, resync repairs the topic."""

from __future__ import annotations

import asyncio
import threading

import pytest

from connectors.postgres.devices import DeviceNotFound
from connectors.postgres.flows import FlowExists, FlowNotFound
from connectors.registry import DeviceRegistry, FlowRegistry, NotPublished
from schemas.devices import NewDevice, encode_device
from schemas.flows import FlowDefinition, decode_flow_document
from streams.flow_engine.engine import check_definition
from streams.flow_engine.examples import examples
from tests.unit.registry_fakes import MemoryFlowStore, MemoryPublisher, MemoryStore


def gas() -> FlowDefinition:
    return examples()["gas-above-500"]


def flows() -> tuple[FlowRegistry, MemoryFlowStore, MemoryPublisher]:
    store, publisher = MemoryFlowStore(), MemoryPublisher(topic="fleet.flows.v1")
    return FlowRegistry(store, publisher, check_definition), store, publisher


async def test_a_flow_change_is_published_after_it_is_stored_and_a_delete_is_a_tombstone() -> None:
    registry, store, publisher = flows()
    created = await registry.create("gas", gas())
    published = publisher.latest()["gas"]
    assert published is not None and decode_flow_document(published) == created
    disabled = await registry.set_enabled("gas", False)
    assert store.rows["gas"] == disabled and not disabled.enabled
    await registry.delete("gas")
    assert publisher.sent[-1] == ("gas", None)


async def test_a_failed_publish_names_the_kinds_resync_and_a_retry_publishes_what_is_stored() -> (
    None
):
    registry, store, publisher = flows()
    await registry.create("gas", gas())
    publisher.down = True
    with pytest.raises(NotPublished, match="fleetstream flows resync") as caught:
        await registry.set_enabled("gas", False)
    assert caught.value.retriable and not store.rows["gas"].enabled
    publisher.down = False
    with pytest.raises(FlowExists):
        await registry.create("gas", gas())  # the retry finds it stored, and publishes it
    published = publisher.latest()["gas"]
    assert published is not None and not decode_flow_document(published).enabled

    devices = DeviceRegistry(MemoryStore(), MemoryPublisher(down=True))
    with pytest.raises(NotPublished, match="fleetstream devices resync"):
        await devices.create(NewDevice(device_id="esp-1"))


async def test_an_id_that_cannot_exist_is_not_found_without_a_store_call() -> None:
    registry, _, publisher = flows()
    with pytest.raises(FlowNotFound):
        await registry.delete("not a flow id")
    assert await registry.get("not a flow id") is None
    devices = DeviceRegistry(MemoryStore(), publisher)
    with pytest.raises(DeviceNotFound):
        await devices.delete("bad\x00id")
    assert publisher.sent == []


async def test_resync_publishes_what_differs_and_tombstones_what_is_gone() -> None:
    registry, store, publisher = flows()
    kept = await registry.create("kept", gas())
    stale = await registry.create("stale", gas())
    store.rows["stale"] = await store.set_enabled("stale", False)
    publisher.sent.clear()
    report = await registry.resync({"kept": kept, "stale": stale, "ghost": kept})
    assert (report.published, report.unchanged, report.tombstoned) == (1, 1, 1)
    assert [key for key, _ in publisher.sent] == ["stale", "ghost"]
    assert publisher.latest()["ghost"] is None

    devices_store = MemoryStore()
    devices = DeviceRegistry(devices_store, publisher)
    device, _ = await devices.create(NewDevice(device_id="esp-1"))
    report = await devices.resync({"esp-1": device})
    assert (report.published, report.unchanged, report.tombstoned) == (0, 1, 0)
    assert publisher.latest()["esp-1"] == encode_device(device)


async def test_a_definition_is_checked_off_the_event_loop() -> None:
    entered, released = threading.Event(), threading.Event()

    def check(flow_id: str, definition: FlowDefinition) -> None:
        entered.set()
        if not released.wait(timeout=5):  # only the event loop releases it
            raise AssertionError("the check held the event loop")
        check_definition(flow_id, definition)

    registry = FlowRegistry(MemoryFlowStore(), MemoryPublisher(topic="fleet.flows.v1"), check)
    creating = asyncio.create_task(registry.create("gas", gas()))
    assert await asyncio.to_thread(entered.wait, 5)
    released.set()
    assert (await creating).version == 1

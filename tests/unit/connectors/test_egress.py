"""The egress guard: what flows' HTTP calls and RTSP captures may connect to."""

from __future__ import annotations

import httpx
import pytest

from connectors.egress import (
    EgressPolicy,
    EgressRefused,
    guarded_client,
    kafka_target_refusal,
    literal_url_refusal,
    parse_allow,
)
from schemas.settings import EgressSettings, Settings

STRICT = EgressPolicy.from_settings(Settings())


def policy(allow: str) -> EgressPolicy:
    return EgressPolicy.from_settings(Settings(egress=EgressSettings(allow=allow)))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.9",
        "172.16.5.5",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1",
        "0.0.0.0",  # noqa: S104 - an address refused, nothing binds
        "224.0.0.1",
        "100.64.0.1",
    ],
)
def test_addresses_that_are_not_public_are_refused_by_default(address: str) -> None:
    assert STRICT.refusal("target", address, 80) is not None


def test_a_public_address_passes() -> None:
    assert STRICT.refusal("example.com", "93.184.216.34", 443) is None


def test_the_allowlist_opens_networks_hosts_and_endpoints_but_not_the_stacks_own_services() -> None:
    lan = policy("127.0.0.0/8, camera.plant, 10.0.0.9:8554")
    assert lan.refusal("127.0.0.1", "127.0.0.1", 18080) is None
    assert lan.refusal("camera.plant", "192.168.1.20", 554) is None
    assert lan.refusal("10.0.0.9", "10.0.0.9", 8554) is None
    assert lan.refusal("10.0.0.9", "10.0.0.9", 22) is not None
    for port in (5432, 6379, 9092, 8000, 6066):  # Postgres, Redis, Kafka, the API, the worker
        assert "own services" in (lan.refusal("127.0.0.1", "127.0.0.1", port) or ""), port
    assert policy("127.0.0.1:6379").refusal("127.0.0.1", "127.0.0.1", 6379) is None


def test_allow_entries_that_are_nothing_are_named() -> None:
    with pytest.raises(ValueError, match="no CIDR"):
        parse_allow("10.0.0.0/8, not a host!")


async def test_a_name_resolving_to_loopback_is_refused_like_the_address() -> None:
    with pytest.raises(EgressRefused, match="loopback"):
        await STRICT.resolve("localhost", 8080)


async def test_the_guarded_client_refuses_before_connecting() -> None:
    async with guarded_client(STRICT, max_connections=2) as client:
        with pytest.raises(httpx.ConnectError, match="egress refused"):
            await client.get("http://127.0.0.1:9/latest/meta-data")


def test_literal_hosts_are_refused_when_a_flow_is_stored_and_templates_wait() -> None:
    assert literal_url_refusal("http://169.254.169.254/latest/meta-data", STRICT)
    assert literal_url_refusal("http://localhost:8081/x", STRICT)
    assert literal_url_refusal("http://127.0.0.1:8000/api", STRICT)
    assert literal_url_refusal("https://hooks.example.com/x", STRICT) is None
    assert literal_url_refusal("http://{{ device.metadata.host }}/x", STRICT) is None


@pytest.mark.parametrize(
    ("topic", "refused"),
    [
        ("fleet.raw.v1", True),
        ("fleet.deadletter.v1", True),
        ("fleetstream-device-status-changelog", True),
        ("fleetstream-rollups-changelog", True),
        ("__consumer_offsets", True),
        ("plant.alarms", False),
    ],
)
def test_kafka_nodes_may_not_write_to_the_pipelines_or_internal_topics(
    topic: str, refused: bool
) -> None:
    assert (kafka_target_refusal(topic, Settings()) is not None) is refused

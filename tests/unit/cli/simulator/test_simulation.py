"""Where a simulation may send: loopback only, unless the caller allows more."""

from __future__ import annotations

import pytest

from cli.simulator.simulation import TargetError, target_host

BIND_ALL = "0.0.0.0"  # noqa: S104 - a service's bind address, read here, never bound


@pytest.mark.parametrize(
    ("bound", "target"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.5", "127.0.0.5"),
        ("::1", "::1"),
        ("localhost", "localhost"),
        (BIND_ALL, "127.0.0.1"),
        ("::", "127.0.0.1"),
    ],
)
def test_loopback_and_bind_all_addresses_are_targets(bound: str, target: str) -> None:
    assert target_host(bound, allow_remote=False) == target


@pytest.mark.parametrize("host", ["10.0.0.7", "192.168.1.20", "api.example.com"])
def test_anything_else_needs_allow_remote(host: str) -> None:
    with pytest.raises(TargetError, match=host):
        target_host(host, allow_remote=False)
    assert target_host(host, allow_remote=True) == host

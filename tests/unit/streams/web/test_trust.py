"""Which advertised worker URLs get the admin token (``FLEET_WORKER__TRUSTED_URLS``)."""

from __future__ import annotations

import pytest

from schemas.settings import WorkerSettings
from streams.web.trust import WorkerTrust, same_origin

DEFAULT = WorkerTrust.parse(WorkerSettings().trusted_urls)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6066",
        "http://127.0.0.1:6067/",
        "http://LOCALHOST:7000",
        "http://[::1]:6066",
        "http://127.0.0.1",  # port 80
    ],
)
def test_by_default_loopback_workers_are_trusted(url: str) -> None:
    assert DEFAULT.refusal(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:6066",  # another machine
        "http://127.0.0.2:6066",  # loopback too, but not what the default names
        "http://evil.example:6066",
        "http://127.0.0.1.evil.example:6066",
        "http://localhost.evil.example:6066",
        "http://127.0.0.1@evil.example:6066",  # user information, the host is evil.example
        "http://user:secret@127.0.0.1:6066",
        "https://127.0.0.1:6066",  # another scheme than listed
        "ftp://127.0.0.1:6066",
        "http://[::ffff:127.0.0.1]:6066",  # an IPv4-mapped address is no entry's
        "http://127.0.0.1:99999",  # does not parse
        "/relative",
        "",
    ],
)
def test_by_default_anything_else_is_refused_with_a_reason(url: str) -> None:
    why = DEFAULT.refusal(url)
    assert why is not None and why.strip()


def test_entries_name_hosts_subdomains_addresses_networks_and_ports() -> None:
    trust = WorkerTrust.parse(
        " https://*.workers.internal:6066 , http://worker-1.fleet:*, http://10.20.0.0/16:6066,"
        "http://[fd00::/8]:*, http://192.0.2.7"
    )
    assert trust.refusal("https://w1.workers.internal:6066") is None
    assert trust.refusal("https://a.b.workers.internal:6066/") is None
    assert trust.refusal("https://workers.internal:6066") is not None  # the domain itself
    assert trust.refusal("https://w1.workers.internal.evil:6066") is not None
    assert trust.refusal("https://w1.workers.internal:6067") is not None
    assert trust.refusal("http://w1.workers.internal:6066") is not None  # scheme
    assert trust.refusal("http://WORKER-1.fleet:1234") is None
    assert trust.refusal("http://worker-2.fleet:1234") is not None
    assert trust.refusal("http://10.20.255.1:6066") is None
    assert trust.refusal("http://10.21.0.1:6066") is not None
    assert trust.refusal("http://[fd12::1]:7000") is None
    assert trust.refusal("http://192.0.2.7:80") is None
    assert trust.refusal("http://192.0.2.7:8080") is not None  # no port: the scheme's default


def test_names_and_addresses_are_matched_as_advertised_without_dns() -> None:
    by_address = WorkerTrust.parse("http://127.0.0.1:*")
    assert by_address.refusal("http://localhost:6066") is not None
    by_name = WorkerTrust.parse("http://localhost:*")
    assert by_name.refusal("http://127.0.0.1:6066") is not None


def test_an_empty_setting_trusts_no_other_worker() -> None:
    assert WorkerTrust.parse("").refusal("http://127.0.0.1:6066") is not None


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1:6066",  # no scheme
        "ftp://host:1",
        "http://*:*",  # everything: list the hosts instead
        "http://*",
        "http://host:*/path",
        "http://host:70000",
        "http://host:0",
        "http://user@host:1",
        "http://ho st:1",
        "http://host.*:1",
    ],
)
def test_a_malformed_entry_is_refused_naming_the_setting(entry: str) -> None:
    with pytest.raises(ValueError, match="FLEET_WORKER__TRUSTED_URLS") as refused:
        WorkerTrust.parse(f"http://127.0.0.1:*,{entry}")
    assert repr(entry) in str(refused.value)


def test_same_origin_compares_scheme_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:6066/", "http://127.0.0.1:6066")
    assert same_origin("http://host", "http://host:80")
    assert not same_origin("http://127.0.0.1:6066", "http://127.0.0.1:6067")
    assert not same_origin("http://127.0.0.1:6066", "https://127.0.0.1:6066")

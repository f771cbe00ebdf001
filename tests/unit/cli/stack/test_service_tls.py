"""Secure mode's Postgres and Redis server options (nothing is started)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cli.stack import service_tls
from cli.stack.apicurio import Apicurio
from cli.stack.certs import Pki
from cli.stack.redis import Redis
from schemas.settings import RedisSettings, Settings, StackSettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    made = Pki(tmp_path_factory.mktemp("home") / "pki")
    made.ensure(lambda _: None, names=("postgres", "redis"))
    return made


def test_postgres_serves_copies_of_its_certificate_with_a_private_key(
    pki: Pki, tmp_path: Path
) -> None:
    folder = tmp_path / "tls"
    options = dict(o.split("=", 1) for o in service_tls.postgres_options(pki, folder, None))
    assert options["ssl"] == "on"
    assert Path(options["ssl_cert_file"]).read_bytes() == pki.cert("postgres").read_bytes()
    key = Path(options["ssl_key_file"])
    assert key.read_bytes() == pki.key("postgres").read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_postgres_accepts_tcp_logins_only_over_tls(pki: Pki, tmp_path: Path) -> None:
    options = dict(o.split("=", 1) for o in service_tls.postgres_options(pki, tmp_path, None))
    rules = Path(options["hba_file"]).read_text(encoding="ascii").splitlines()
    assert [rule.split()[0] for rule in rules] == ["local", "hostssl", "hostssl"]


def _argv(home: Path, secure: bool) -> tuple[str, ...]:
    settings = Settings(
        stack=StackSettings(home=home, secure=secure), redis=RedisSettings(port=6391)
    )
    return Redis(settings).prepare(lambda _: None).argv


def _value(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_plain_redis_keeps_its_clear_text_port(tmp_path: Path) -> None:
    argv = _argv(tmp_path, secure=False)
    assert _value(argv, "--port") == "6391"
    assert not [arg for arg in argv if arg.startswith("--tls")]


def test_secure_redis_serves_tls_on_its_port_and_closes_clear_text(tmp_path: Path) -> None:
    argv = _argv(tmp_path, secure=True)
    pki = Pki.of_home(tmp_path)
    assert _value(argv, "--port") == "0"
    assert _value(argv, "--tls-port") == "6391"
    assert _value(argv, "--tls-cert-file") == str(pki.cert("redis"))
    assert _value(argv, "--tls-key-file") == str(pki.key("redis"))
    assert _value(argv, "--tls-ca-cert-file") == str(pki.ca_cert)
    assert _value(argv, "--tls-auth-clients") == "no"


def test_apicurio_serves_https_only_in_secure_mode(tmp_path: Path) -> None:
    secure = Apicurio(Settings(stack=StackSettings(home=tmp_path, secure=True)))
    flags = dict(flag.removeprefix("-D").split("=", 1) for flag in secure._tls_flags(8443))
    pki = Pki.of_home(tmp_path)
    assert flags == {
        "quarkus.http.ssl-port": "8443",
        "quarkus.http.ssl.certificate.files": str(pki.cert("apicurio")),
        "quarkus.http.ssl.certificate.key-files": str(pki.key("apicurio")),
        "quarkus.http.insecure-requests": "disabled",
    }
    plain = Apicurio(Settings(stack=StackSettings(home=tmp_path)))
    assert plain._tls_flags(8081) == ()

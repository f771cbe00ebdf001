"""The secure mode's local CA, made with the openssl command (local, no network)."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from cli.stack.certs import SERVERS, Pki


def _verify(pki: Pki, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "verify", "-CAfile", str(pki.ca_cert), str(pki.cert(name))],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )


def test_ensure_makes_a_ca_and_server_certificates_with_private_keys(tmp_path: Path) -> None:
    pki = Pki.of_home(tmp_path)
    lines: list[str] = []
    pki.ensure(lines.append)
    for name in SERVERS:
        assert _verify(pki, name).returncode == 0, name
        for secret in (pki.key(name), pki.keystore(name)):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert stat.S_IMODE(pki.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.root.stat().st_mode) == 0o700
    # A TLS server can load each pair, and the names clients dial are in the certificate.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert("api"), pki.key("api"))
    text = subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(pki.cert("api"))],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:localhost" in text
    assert "IP Address:127.0.0.1" in text


def test_ensure_is_idempotent(tmp_path: Path) -> None:
    pki = Pki.of_home(tmp_path)
    pki.ensure(lambda _line: None)
    before = {name: pki.cert(name).read_bytes() for name in SERVERS}
    lines: list[str] = []
    pki.ensure(lines.append)
    assert lines == []
    assert {name: pki.cert(name).read_bytes() for name in SERVERS} == before


def test_rotate_issues_new_certificates_that_the_old_ca_still_verifies(tmp_path: Path) -> None:
    pki = Pki.of_home(tmp_path)
    pki.ensure(lambda _line: None)
    ca_before = pki.ca_cert.read_bytes()
    old = pki.cert("kafka").read_bytes()
    pki.rotate(lambda _line: None)
    assert pki.cert("kafka").read_bytes() != old
    assert pki.ca_cert.read_bytes() == ca_before
    assert _verify(pki, "kafka").returncode == 0


def test_rotate_with_a_new_ca_invalidates_the_old_one(tmp_path: Path) -> None:
    pki = Pki.of_home(tmp_path)
    pki.ensure(lambda _line: None)
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_bytes(pki.ca_cert.read_bytes())
    pki.rotate(lambda _line: None, new_ca=True)
    assert _verify(pki, "kafka").returncode == 0
    stale = Pki(pki.root)
    result = subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "verify", "-CAfile", str(old_ca), str(stale.cert("kafka"))],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_the_rotate_command_issues_new_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.stack_commands import stack_app
    from schemas.settings import get_settings

    pki = Pki.of_home(tmp_path)
    pki.ensure(lambda _line: None)
    old = pki.cert("api").read_bytes()
    monkeypatch.setenv("FLEET_STACK__HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(stack_app, ["certs", "rotate"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "new certificates for kafka, api, worker, mqtt-front" in result.output
    assert pki.cert("api").read_bytes() != old

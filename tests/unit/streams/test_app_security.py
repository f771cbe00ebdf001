"""The worker's Faust app (aiokafka) connects with the same security settings as the rest."""

from __future__ import annotations

import ssl
from pathlib import Path

from faust.auth import SASLCredentials
from pydantic import SecretStr

from cli.stack.certs import Pki
from schemas.settings import KafkaSettings, WorkerSettings
from streams.app import broker_credentials, web_ssl_context


def test_plain_mode_has_no_credentials() -> None:
    assert broker_credentials(KafkaSettings()) is None


def test_sasl_ssl_gives_scram_credentials_and_a_verifying_context(tmp_path: Path) -> None:
    pki = Pki.of_home(tmp_path)
    pki.ensure(lambda _line: None, names=())
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_username="worker",
        sasl_password=SecretStr("pw"),
        ssl_cafile=str(pki.ca_cert),
    )
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.username == "worker"
    assert credentials.password == "pw"  # noqa: S105 - a made-up test password
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    context = credentials.ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_the_web_server_serves_https_only_with_a_certificate(tmp_path: Path) -> None:
    pki = Pki.of_home(tmp_path)
    pki.ensure(lambda _line: None, names=("worker",))
    assert web_ssl_context(WorkerSettings()) is None
    worker = WorkerSettings(
        web_tls_certfile=str(pki.cert("worker")), web_tls_keyfile=str(pki.key("worker"))
    )
    context = web_ssl_context(worker)
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE  # a server: browsers show no certificate

"""How every Kafka client of ours connects: the security settings as client configuration.

One place turns ``settings.kafka`` (protocol, SASL user and password, CA, optional client
certificate) into librdkafka properties (confluent-kafka producers, consumers, admin clients)
and into the TLS context of Faust's ``broker_credentials`` (aiokafka, made in
``streams/app.py``). In plain mode (``PLAINTEXT``, the default)
both add nothing, so clients behave exactly as before.

Call sites that only hold a bootstrap string use :func:`client_config`, which takes the
security settings of this process (``get_settings()``: the environment); those that hold a
settings object pass its Kafka section.
"""

from __future__ import annotations

import ssl
from typing import Any

from schemas.settings import KafkaSettings, get_settings


def security_config(kafka: KafkaSettings) -> dict[str, str]:
    """librdkafka properties for ``kafka``'s security settings ({} for PLAINTEXT)."""
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": kafka.security_protocol.lower()}
    if kafka.security_protocol.startswith("SASL_"):
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.encrypted:
        # librdkafka checks the broker's name against its certificate (SAN) by default.
        if kafka.ssl_cafile:
            config["ssl.ca.location"] = kafka.ssl_cafile
        if kafka.ssl_certfile:
            config["ssl.certificate.location"] = kafka.ssl_certfile
            config["ssl.key.location"] = kafka.ssl_keyfile
    return config


def client_config(
    bootstrap_servers: str, kafka: KafkaSettings | None = None, /, **extra: Any
) -> dict[str, Any]:
    """``bootstrap.servers``, the security properties (of ``kafka``, else of this process's
    settings) and ``extra`` (dotted librdkafka names passed as a dict: ``**{"group.id": g}``)."""
    security = security_config(kafka if kafka is not None else get_settings().kafka)
    return {"bootstrap.servers": bootstrap_servers, **security, **extra}


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context trusting ``kafka.ssl_cafile`` (or the system CAs), with the client
    certificate when one is set; hostnames are checked."""
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None)
    return context

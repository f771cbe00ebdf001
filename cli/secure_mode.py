"""``FLEET_STACK__SECURE=true`` for the processes ``fleetstream`` starts: who connects as whom.

The stack's broker then takes only SASL_SSL clients with one of its SCRAM principals
(``cli/stack/kafka_security.py``). The ``fleetstream`` command itself (setup, topics, the admin
commands: every command but the services, switched in the app's callback by
:func:`for_command`) connects as the super user ``admin``; ``fleetstream run`` gives each child
its own principal and the local CA's certificate: the API (principal ``api``) serves HTTPS, the
worker (``worker``) serves its web views over HTTPS, the MQTT front (``bridge``) adds its TLS
listener.
Kafka security set explicitly (``FLEET_KAFKA__SECURITY_PROTOCOL`` other than PLAINTEXT) is
left as given: that is a deployment's own broker, not the local stack's.

The stack's Postgres, Redis, S3Proxy and Apicurio then serve TLS only
(``cli/stack/service_tls.py``, ``s3proxy.py``, ``apicurio.py``): the command and every child
connect with ``sslmode=verify-full``, Redis TLS and the ``https://`` S3 and registry
addresses, trusting the local CA (:func:`services_env`), unless those were given explicitly.
"""

from __future__ import annotations

import os
from typing import Final

from cli.console import say
from cli.stack.certs import Pki
from cli.stack.kafka_security import ADMIN, MECHANISM, passwords
from schemas.settings import Settings, get_settings

#: Commands that run one of fleetstream's services: they connect as the principal their
#: environment names (``fleetstream run`` gives each child its own), never as the super user.
SERVICE_COMMANDS: Final = frozenset({"api", "worker", "mqtt", "mqtt-front"})
#: ``run`` switches itself, after keeping the settings its children are given their own from.
SELF_SWITCHING: Final = frozenset({"run"})

#: The principal and the certificate of each child of ``fleetstream run``.
CHILDREN: Final[dict[str, tuple[str, str, str]]] = {
    # child: (principal, certificate variable prefix, certificate name)
    "api": ("api", "FLEET_API__TLS_", "api"),
    "worker": ("worker", "FLEET_WORKER__WEB_TLS_", "worker"),
    "mqtt-front": ("bridge", "FLEET_MQTT_FRONT__TLS_", "mqtt-front"),
}


def applies(settings: Settings) -> bool:
    return settings.stack.secure and settings.kafka.security_protocol == "PLAINTEXT"


def kafka_env(settings: Settings, principal: str) -> dict[str, str]:
    """FLEET_KAFKA__* variables connecting as ``principal`` to the secure local stack."""
    home = settings.stack.home
    return {
        "FLEET_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "FLEET_KAFKA__SASL_MECHANISM": MECHANISM,
        "FLEET_KAFKA__SASL_USERNAME": principal,
        "FLEET_KAFKA__SASL_PASSWORD": passwords(home)[principal],
        "FLEET_KAFKA__SSL_CAFILE": str(Pki.of_home(home).ca_cert),
    }


def services_env(settings: Settings) -> dict[str, str]:
    """FLEET_POSTGRES__*, FLEET_REDIS__*, FLEET_BLOB__S3_* and FLEET_SCHEMA_REGISTRY__*
    variables for the secure local stack's TLS-only Postgres, Redis, S3Proxy and Apicurio
    (those set already, e.g. another CA, are kept); {} in plain mode."""
    if not settings.stack.secure:
        return {}
    ca = str(Pki.of_home(settings.stack.home).ca_cert)
    env: dict[str, str] = {}
    if settings.postgres.sslmode == "disable":
        env |= {"FLEET_POSTGRES__SSLMODE": "verify-full", "FLEET_POSTGRES__SSL_ROOTCERT": ca}
    if not settings.redis.tls:
        env |= {"FLEET_REDIS__TLS": "true", "FLEET_REDIS__TLS_CAFILE": ca}
    endpoint = settings.blob.s3_endpoint
    if endpoint.startswith("http://") and not settings.blob.s3_cafile:
        env |= {"FLEET_BLOB__S3_ENDPOINT": _https(endpoint), "FLEET_BLOB__S3_CAFILE": ca}
    registry = settings.schema_registry.url
    if registry.startswith("http://") and not settings.schema_registry.cafile:
        env |= {"FLEET_SCHEMA_REGISTRY__URL": _https(registry), "FLEET_SCHEMA_REGISTRY__CAFILE": ca}
    return env


def _https(url: str) -> str:
    return "https://" + url.removeprefix("http://")


def child_env(settings: Settings, child: str) -> dict[str, str] | None:
    """The environment of ``fleetstream run``'s child ``child`` (None: inherit ours)."""
    if not applies(settings) or child not in CHILDREN:
        return None
    principal, prefix, cert = CHILDREN[child]
    pki = Pki.of_home(settings.stack.home)
    return {
        **os.environ,
        **services_env(settings),
        **kafka_env(settings, principal),
        f"{prefix}CERTFILE": str(pki.cert(cert)),
        f"{prefix}KEYFILE": str(pki.key(cert)),
    }


def for_command(name: str | None) -> None:
    """Before ``fleetstream <name>`` runs (the app's callback): every command but the services
    and ``run`` connects as the super user in secure mode (:func:`as_admin`), so an admin
    command cannot forget to."""
    if name is None or name in SERVICE_COMMANDS | SELF_SWITCHING:
        return
    as_admin(get_settings())


def as_admin(settings: Settings) -> Settings:
    """In secure mode, this process's settings connecting as the super user (the CA and the
    passwords made first if need be) and over TLS to Postgres and Redis; otherwise
    ``settings`` unchanged.

    The variables go into this process's environment, so every client it builds
    (``connectors.kafka.security.client_config``, ``connectors.tls``), the children that
    inherit it and the stack's health checks agree.
    """
    env = services_env(settings)
    if not env and not applies(settings):
        return settings
    Pki.of_home(settings.stack.home).ensure(say)
    if applies(settings):
        env |= kafka_env(settings, ADMIN)
    os.environ.update(env)
    get_settings.cache_clear()
    return get_settings()

"""Prometheus exposition shared by every process (the API, the workers, the MQTT fronts).

* One access rule (``FLEET_METRICS__ACCESS``): ``open``, or ``token`` — the admin token as
  ``Authorization: Bearer``; each ``/metrics`` asks :func:`scrape_allowed`.
* No ``*_created`` series: prometheus_client adds one per counter, histogram and summary child
  by default, which doubles the series count and carries nothing Prometheus' ``rate()`` needs.
  Importing this module turns them off for the process (a global switch of the library, read at
  every collection), and every ``/metrics`` renders through :func:`render`, so it is imported
  wherever metrics are exposed.
"""

from __future__ import annotations

import hashlib
import hmac

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics import disable_created_metrics

from schemas.settings import Settings

disable_created_metrics()  # type: ignore[no-untyped-call]

UNAUTHORIZED_DETAIL = "FLEET_METRICS__ACCESS=token: send Authorization: Bearer <admin token>"


def scrape_allowed(settings: Settings, authorization: str | None) -> bool:
    """True when the rule lets a request with this ``Authorization`` header read metrics."""
    if settings.metrics.access == "open":
        return True
    admin_token = settings.auth.admin_token.get_secret_value()
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip() or not admin_token:
        return False
    presented = hashlib.sha256(credentials.strip().encode()).digest()
    return hmac.compare_digest(presented, hashlib.sha256(admin_token.encode()).digest())


def render(*registries: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registries`` (in order) and its content type."""
    return b"".join(generate_latest(registry) for registry in registries), CONTENT_TYPE_LATEST

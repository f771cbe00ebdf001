"""``fleetstream api``: uvicorn serving the API, in one process or ``FLEET_API__PROCESSES``.

Several processes share the listening socket (uvicorn's workers: its supervisor binds the port
and restarts a worker that dies); each runs the whole app (its own Kafka producer, batcher,
device cache and live feed). Their Prometheus values go to files in a fresh directory
(``PROMETHEUS_MULTIPROC_DIR``) that ``/metrics`` sums, so any process answers for all of them;
the directory is removed when the API stops. Seed 002's WebSocket port (its profile) is one
port a process binds on its own: several processes cannot serve it, so that combination is
refused at start.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from api.metrics import MULTIPROCESS_DIR
from api.observability import log_config
from schemas.errors import FleetError
from schemas.settings import Settings


class ApiSettingsError(FleetError):
    """Settings the API cannot start with; the message says which and why."""


def serve_api(settings: Settings) -> None:
    """Serve until stopped (uvicorn handles SIGINT/SIGTERM)."""
    import uvicorn  # imported here: keeps `fleetstream --help` fast

    processes = settings.api.processes
    if processes > 1 and "002" in settings.compat.profiles():
        raise ApiSettingsError(
            "FLEET_API__PROCESSES > 1 cannot serve seed 002's WebSocket port "
            "(FLEET_COMPAT__WS_PORT, one port a process binds): run one process, or turn the "
            "002 profile off"
        )
    metrics_dir = tempfile.mkdtemp(prefix="fleetstream-api-metrics-") if processes > 1 else None
    if metrics_dir is not None:
        os.environ[MULTIPROCESS_DIR] = metrics_dir  # inherited by the worker processes
    try:
        uvicorn.run(
            "api.app:served_app",
            factory=True,
            workers=processes if processes > 1 else None,
            host=settings.api.host,
            port=settings.api.port,
            log_level=settings.log_level.lower(),
            log_config=log_config(settings.log_level),  # JSON lines with the request id
            access_log=False,  # the API logs requests itself (api/observability.py)
            proxy_headers=False,  # the client is the TCP peer (FLEET_COMPAT__TRUSTED_NETWORKS)
            # HTTPS when given a certificate (docs/security.md); None keeps plain HTTP.
            ssl_certfile=settings.api.tls_certfile or None,
            ssl_keyfile=settings.api.tls_keyfile or None,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)

"""What ``fleetstream run``/``setup``/``worker`` do, kept out of the CLI definitions."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cli import secure_mode

# operator_errors is re-exported: the other command modules and cli.main import it from here.
from cli.console import operator_errors as operator_errors
from cli.console import say
from cli.registries import DEVICES, FLOWS
from cli.supervisor import Supervisor
from connectors.kafka.admin import ensure_topics
from schemas.settings import Settings
from streams.runtime import tune_gc
from streams.topology import changelog_specs, topic_specs

if TYPE_CHECKING:
    import faust

STOP_GRACE_S = 15.0
SUPERVISE_EVERY_S = 0.5
SERVICES = ("api", "worker", "mqtt-front")


def prepare(settings: Settings) -> None:
    """Local stack up, migrations applied, topics created, Avro schemas registered, the device
    registry topic in step with Postgres: idempotent, with progress output."""
    from cli.stack import manager
    from connectors.postgres import migrate

    manager.up(settings, progress=say)
    say("applying database migrations")
    migrate.upgrade(settings.postgres)
    create_topics(settings)
    register_schemas(settings)
    resync_devices(settings)
    resync_flows(settings)


def register_schemas(settings: Settings) -> None:
    """Register the Avro contracts of the analytics topics (BACKWARD compatibility)."""
    from connectors.schema_registry import register_contracts

    ids = register_contracts(settings)
    say("schemas registered: " + ", ".join(f"{subject} (id {i})" for subject, i in ids.items()))


def resync_devices(settings: Settings) -> None:
    """Republish what the registry topic lacks (e.g. a publish lost to a crash or an outage)."""
    say(DEVICES.describe(DEVICES.resync(settings)))


def resync_flows(settings: Settings) -> None:
    """Republish flows the flow registry topic lacks (same repair as for devices)."""
    say(FLOWS.describe(FLOWS.resync(settings)))


def create_topics(settings: Settings) -> None:
    created = ensure_topics(settings.kafka.bootstrap_servers, topic_specs(settings))
    say(f"created topics: {', '.join(created)}" if created else "topics are in place")


def create_changelogs(app: faust.App, settings: Settings) -> list[str]:
    """Create ``app``'s table changelogs and wait until they are served; return their names."""
    names = [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    ensure_topics(settings.kafka.bootstrap_servers, changelog_specs(names, settings))
    return names


def run_worker(settings: Settings) -> None:
    from faust import Worker

    from agents.registry import build_worker_app
    from connectors.schema_registry import install_contracts
    from streams.crashes import CrashLedger

    install_contracts(settings)  # a SchemaRegistryError names the registry and stops the worker
    crashes = CrashLedger(settings.kafka.bootstrap_servers, settings.topics.crashes)
    with operator_errors():
        crashes.load()
    app, _ = build_worker_app(settings, crashes)
    with operator_errors():
        create_changelogs(app, settings)
    settings.worker.datadir.mkdir(parents=True, exist_ok=True)
    tune_gc(settings.gc_gen0_threshold)
    Worker(app, loglevel=settings.log_level.lower()).execute_from_commandline()


def run_services(settings: Settings) -> int:
    """Run API, worker and MQTT front as child processes until Ctrl-C or SIGTERM; a child
    that exits is restarted with backoff (``cli.supervisor``) while the others go on.

    Returns 0 when every child stopped cleanly (Ctrl-C reaches the children directly, as they
    share our terminal), 1 when one failed.
    """
    # SIGTERM (a supervisor, `kill`) stops the children as Ctrl-C does: left to the default
    # action, this process would die at once and leave its children running.
    signal.signal(signal.SIGTERM, _terminated)
    commands = {name: [sys.executable, "-m", "cli.main", name] for name in SERVICES}
    supervisor = Supervisor(commands, spawn=_spawner(settings), say=say)
    try:
        supervisor.start()
        _announce(settings)
        while True:
            supervisor.step()
            time.sleep(SUPERVISE_EVERY_S)  # a child's exit has no event to wait on
    except (KeyboardInterrupt, Terminated):
        say("stopping API, worker and MQTT front")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the stop short
    codes = supervisor.stop(STOP_GRACE_S)
    failed = {name: code for name, code in codes.items() if code > 0}
    for name, code in failed.items():
        say(f"{name} exited with status {code}")
    return 1 if failed else 0


def _spawner(settings: Settings) -> Callable[[Sequence[str]], subprocess.Popen[bytes]]:
    """Starts a child (its command is the last argument) with its own principal and
    certificate in secure mode (``cli.secure_mode``), else with our environment."""

    def spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
        env = secure_mode.child_env(settings, argv[-1])
        return subprocess.Popen(argv, env=env)  # noqa: S603 - our own CLI, fixed arguments

    return spawn


def _announce(settings: Settings) -> None:
    api, scheme = settings.api, "https" if secure_mode.applies(settings) else "http"
    say(f"API        {scheme}://{api.host}:{api.port}  (docs: /docs, health: /health/ready)")
    if settings.worker.web_enabled:
        web = f"{scheme}://{settings.worker.web_host}:{settings.worker.web_port}"
        say(f"operator   {web}/ops/  (admin token; Prometheus: {web}/metrics)")
    front, mqtt = settings.mqtt_front, settings.mqtt
    say(f"MQTT       mqtt://{front.host}:{front.port}  topics {mqtt.topics} (device_id + token)")
    say(f"           health and metrics: http://{front.host}:{front.health_port}/health, /metrics")
    say("Ctrl-C stops API, worker and MQTT front; `fleetstream stack down` stops the stack")


class Terminated(Exception):
    """SIGTERM while ``run_services`` waits for its children."""


def _terminated(_signum: int, _frame: object) -> None:
    raise Terminated

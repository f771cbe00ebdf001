"""docker-compose.yml and .env.example, checked by reading them: no Docker engine runs here.

Each test names the broken compose file it catches. What reading cannot show (an image tag
that does not exist on its registry, a health check command missing from an image, the
services actually talking to each other) stays for a machine with Docker.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from schemas.settings import (
    ApiSettings,
    MqttFrontSettings,
    MqttSettings,
    Settings,
    WorkerSettings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

DATA_DIRS = {
    # service: (image repository, where that image keeps its data)
    "kafka": ("apache/kafka", "/var/lib/kafka/data"),  # only with KAFKA_LOG_DIRS set to it
    "postgres": ("postgres", "/var/lib/postgresql/data"),  # PGDATA of the images before 18
    "redis": ("redis", "/data"),  # the image's working dir: AOF and RDB files
    "mosquitto": ("eclipse-mosquitto", "/mosquitto/data"),  # persistence_location, dynsec file
    "minio": ("quay.io/minio/minio", "/data"),  # the folder `minio server` is given
}
"""The stateful services and the folder each one writes to; the schema registry keeps its
state in the postgres service (test_schema_registry_keeps_its_ids_in_postgres)."""

DOCUMENTED_PORTS = {"api": 8000, "worker": 6066, "mqtt-front": 1883}
"""The ports the README gives: the API (curl examples), the operator views and Prometheus
target, MQTT (mosquitto_pub examples). Each must be published on the host under that number."""

KEEPS_RUNNING = ("unless-stopped", "always")
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what compose publishes on when a port names no address


# --- what the settings accept ----------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _env_names(model: type[BaseModel], prefix: str, delimiter: str) -> Iterator[tuple[str, bool]]:
    """(name, open) for every field of ``model`` and, below a section, its fields; ``open``:
    a dict field, whose keys may follow the name (FLEET_API__RATE_LIMIT_PROFILES__CAMERA__...)."""
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name}".upper()
        yield name, _is_mapping(field.annotation)
        section = _model_of(field.annotation)
        if section is not None:  # the whole section as JSON, or field by field
            yield from _env_names(section, f"{name}{delimiter}", delimiter)


def settings_env_names() -> dict[str, bool]:
    """Every environment variable Settings reads: name -> whether names below it are open."""
    config = Settings.model_config
    prefix, delimiter = str(config.get("env_prefix", "")), str(config.get("env_nested_delimiter"))
    return dict(_env_names(Settings, prefix, delimiter))


def is_setting(name: str) -> bool:
    names = settings_env_names()
    if name.upper() in names:
        return True
    delimiter = str(Settings.model_config.get("env_nested_delimiter"))
    return any(
        is_open and name.upper().startswith(f"{known}{delimiter}")
        for known, is_open in names.items()
    )


def setting_default(name: str) -> str:
    """The default of the setting ``name`` as its environment variable would spell it."""
    delimiter = str(Settings.model_config.get("env_nested_delimiter"))
    path = (
        name.upper().removeprefix(str(Settings.model_config.get("env_prefix", ""))).split(delimiter)
    )
    value: Any = Settings.model_construct()
    for part in path:
        value = getattr(value, part.lower())
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _without_fleet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("FLEET_"):
            monkeypatch.delenv(name)


def load_settings(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Settings:
    """Settings from ``env`` alone: not the test process's FLEET_* variables, nor a .env file."""
    _without_fleet_environment(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_the_env_name_helper_matches_what_the_settings_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper that listed wrong names would let every name check below pass or fail wrongly."""
    names = settings_env_names()
    assert "FLEET_KAFKA__BOOTSTRAP_SERVERS" in names
    assert "FLEET_API__RATE_LIMIT__PER_S" in names  # a section inside a section
    assert "FLEET_ENVIRONMENT" in names
    assert not is_setting("FLEET_KAFKA__BOOTSTRAP_SERVER")
    assert is_setting("FLEET_BLOB")  # the whole section as JSON
    assert not is_setting("FLEET_BLOBS")
    assert is_setting("FLEET_API__RATE_LIMIT_PROFILES__CAMERA__PER_S")

    settings = load_settings(
        monkeypatch,
        {
            "FLEET_KAFKA__BOOTSTRAP_SERVERS": "kafka:19092",
            "FLEET_API__RATE_LIMIT__PER_S": "3.5",
            "FLEET_API__RATE_LIMIT__BURST": "7",
            "FLEET_WORKER__DATADIR": "/var/lib/x",
        },
    )
    assert settings.kafka.bootstrap_servers == "kafka:19092"
    assert (settings.api.rate_limit.per_s, settings.api.rate_limit.burst) == (3.5, 7)
    assert str(settings.worker.datadir) == "/var/lib/x"
    assert setting_default("FLEET_BLOB__S3_SECRET_KEY") == "dev-s3-secret-change-me"
    assert setting_default("FLEET_API__PORT") == "8000"


# --- reading docker-compose.yml as compose does ---------------------------------------------

_VARIABLE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", re.DOTALL)


def references(text: str) -> Iterator[tuple[str, str, str]]:
    """(name, operator, argument) of each ${...} or $NAME compose interpolates in ``text``."""
    for escaped, braced, bare in _VARIABLE.findall(text):
        if escaped:
            continue
        if bare:
            yield bare, "", ""
            continue
        match = _BRACED.match(braced)
        assert match, f"compose cannot interpolate ${{{braced}}}"
        yield match.group(1), match.group(2) or "", match.group(3) or ""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` as compose passes it on with ``env`` as .env: defaults filled in, $$ → $."""

    def one(match: re.Match[str]) -> str:
        escaped, braced, bare = match.groups()
        if escaped:
            return "$"
        if bare:
            return env.get(bare, "")
        found = _BRACED.match(braced)
        assert found
        name, operator, argument = found.group(1), found.group(2) or "", found.group(3) or ""
        value = env.get(name)
        if operator == ":-":
            return value if value else argument
        if operator == "-":
            return argument if value is None else value
        assert value, f"{name} must be set ({argument})"  # :? and ?
        return value

    return _VARIABLE.sub(one, text)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _resolved(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {key: _resolved(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(item, env) for item in node]
    return node


def raw_compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(COMPOSE.read_text()))


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file with ``env`` (default: none, so every ${VAR:-default} is its default)."""
    return cast(dict[str, Any], _resolved(raw_compose(), env or {}))


def services(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return cast(dict[str, dict[str, Any]], compose(env)["services"])


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    found = service.get("environment") or {}
    if isinstance(found, list):
        pairs = (item.partition("=") for item in found)
        return {name: value for name, _, value in pairs}
    return {str(name): "" if value is None else str(value) for name, value in found.items()}


def env_example() -> dict[str, str]:
    """KEY=VALUE lines of .env.example (comments on their own lines only: see the file)."""
    pairs: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and "#" not in value, f".env.example: {line!r} (comments go on their own line)"
        pairs[name.strip()] = value.strip()
    return pairs


def one_shot(all_services: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Services others wait for to *finish* (service_completed_successfully): setup steps."""
    found = set()
    for service in all_services.values():
        depends = service.get("depends_on") or {}
        if isinstance(depends, Mapping):
            for name, spec in depends.items():
                if (spec or {}).get("condition") == "service_completed_successfully":
                    found.add(name)
    return found


def long_running(all_services: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    oneshots = one_shot(all_services)
    return {name: s for name, s in all_services.items() if name not in oneshots}


def fleet_names_in_compose() -> set[str]:
    """FLEET_* names compose passes to a container, interpolates, or a container's shell reads."""
    names: set[str] = set()
    for service in services().values():
        names |= {name for name in environment(service) if name.upper().startswith("FLEET_")}
    for text in _strings(raw_compose()):
        names |= {name for name, _, _ in references(text) if name.startswith("FLEET_")}
        # $$FLEET_X: left to the container's shell, which reads it from the container's env
        names |= set(re.findall(r"\$\$\{?(FLEET_[A-Z0-9_]+)", text))
    return names


# --- FLEET_* names ---------------------------------------------------------------------------


def test_every_fleet_name_in_compose_and_env_example_is_a_setting() -> None:
    """Catches a misspelt or renamed variable (FLEET_KAFKA_BOOTSTRAP_SERVERS, one underscore):
    pydantic-settings ignores unknown names, so the service would silently use its default."""
    used = fleet_names_in_compose() | {n for n in env_example() if n.startswith("FLEET_")}
    assert len(used) > 10
    unknown = sorted(name for name in used if not is_setting(name))
    assert not unknown, f"not settings of schemas.settings.Settings: {unknown}"


def test_env_example_lists_exactly_the_variables_compose_interpolates() -> None:
    """Catches a .env.example line compose never reads (setting it would change nothing: compose
    passes a container only what its file names) and a ${VAR} the example forgets."""
    interpolated = {name for text in _strings(raw_compose()) for name, _, _ in references(text)}
    assert set(env_example()) == interpolated


def test_a_variable_has_one_default_and_it_is_the_settings_default() -> None:
    """Catches drift between two spellings of one secret (MinIO's root password defaulting to
    something else than the API's FLEET_BLOB__S3_SECRET_KEY: uploads fail), and a compose
    default that differs from what the settings would use without compose."""
    defaults: dict[str, set[str]] = {}
    for text in _strings(raw_compose()):
        for name, operator, argument in references(text):
            if operator in (":-", "-"):
                defaults.setdefault(name, set()).add(argument)
    assert defaults
    for name, found in defaults.items():
        assert len(found) == 1, f"{name} has several defaults: {sorted(found)}"
        if name.startswith("FLEET_"):
            assert found == {setting_default(name)}, name


def test_the_fleetstream_services_share_one_environment() -> None:
    """Catches a secret given to the API but not to the worker (the admin token the worker's
    views check, the MQTT admin the worker makes the flows user with): they must agree."""
    fleet = fleetstream_services()
    shared = [
        {k: v for k, v in environment(s).items() if k in environment(fleet["setup"])}
        for s in fleet.values()
    ]
    assert all(env == shared[0] for env in shared)
    assert "FLEET_AUTH__ADMIN_TOKEN" in shared[0]


def test_env_example_placeholders_are_refused_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catches a placeholder secret the settings would accept in production (a made-up
    "change-me" that is not the development default): a deployment could run with it. The
    settings are those a container gets with .env.example as .env."""
    example = env_example()
    assert example["FLEET_ENVIRONMENT"] == "production"
    secrets = {name for name in example if name.startswith("FLEET_") and _is_secret(name)}
    assert {"FLEET_AUTH__ADMIN_TOKEN", "FLEET_POSTGRES__PASSWORD"} <= secrets
    real = {name: f"a-real-{name.lower()}-value" for name in secrets}

    def api_settings(dotenv: Mapping[str, str]) -> Settings:
        return load_settings(monkeypatch, environment(services(dotenv)["api"]))

    assert api_settings({**example, **real}).environment == "production"
    with pytest.raises(ValidationError):
        api_settings(example)
    for name in sorted(secrets):
        with pytest.raises(ValidationError, match=name):
            api_settings({**example, **real, name: example[name]})


def _is_secret(name: str) -> bool:
    section, _, field = name.removeprefix("FLEET_").lower().partition("__")
    model = _model_of(Settings.model_fields[section].annotation) if field else None
    return model is not None and model.model_fields[field].annotation is SecretStr


# --- volumes ---------------------------------------------------------------------------------


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume or a host path) of ``service``."""
    found: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.partition(":")[0] if rest else source
            found[target] = source if rest else ""
        else:
            found[volume["target"]] = str(volume.get("source") or "")
    return found


def named_volume_at(name: str, target: str) -> None:
    declared = compose().get("volumes") or {}
    source = mounts(services()[name]).get(target)
    assert source is not None, f"{name}: nothing is mounted on {target}, where it writes"
    assert source in declared, f"{name}: {target} is on {source!r}, not a named volume"


@pytest.mark.parametrize("name", sorted(DATA_DIRS))
def test_stateful_services_write_to_a_named_volume(name: str) -> None:
    """Catches a volume mounted where the image does not write (Kafka's volume on
    /var/lib/kafka/data while log.dirs is still /tmp/kraft-combined-logs: every topic lost on
    a re-create), an anonymous volume or a bind mount instead of a named one, and a new image
    whose data folder moved (postgres 18) without this table being revisited."""
    service = services()[name]
    repository, data_dir = DATA_DIRS[name]
    assert service["image"].startswith(f"{repository}:"), "another image: check its data dir"
    named_volume_at(name, data_dir)
    env, command = environment(service), _command_text(service)
    if name == "kafka":
        assert env.get("KAFKA_LOG_DIRS") == data_dir
    if name == "postgres":
        assert env.get("PGDATA", data_dir).startswith(data_dir)
    if name == "redis":
        assert re.search(r"--dir\s+(\S+)", command) is None or f"--dir {data_dir}" in command
    if name == "mosquitto":
        assert f"persistence_location {data_dir.rstrip('/')}/" in command
        assert "persistence true" in command
    if name == "minio":
        assert re.search(rf"\bserver {re.escape(data_dir)}\b", command)


def _command_text(service: Mapping[str, Any]) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else str(command)


def test_schema_registry_keeps_its_ids_in_postgres() -> None:
    """Catches the in-memory registry: a restart would hand out schema ids again from 1, and
    the ids already written into Avro records would name other schemas."""
    registry = services()["apicurio"]
    assert "apicurio-registry-sql:" in registry["image"]
    url = environment(registry)["REGISTRY_DATASOURCE_URL"]
    assert re.fullmatch(r"jdbc:postgresql://postgres:5432/\w+", url), url
    assert not url.endswith("/fleetstream"), "its own database, not the project's tables"
    assert registry["depends_on"]["postgres"]["condition"] == "service_healthy"
    named_volume_at("postgres", DATA_DIRS["postgres"][1])


def test_the_worker_data_folder_is_a_volume_its_user_may_write() -> None:
    """Catches the worker's RocksDB folder under /app (root's) or a volume the non-root user
    of the image cannot write: the worker would fail when it opens its tables."""
    worker = services()["worker"]
    datadir = environment(worker)["FLEET_WORKER__DATADIR"]
    named_volume_at("worker", datadir)
    dockerfile = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the services run as a non-root user"
    user = users[-1]
    # A named volume starts as a copy of the image's folder, owner included.
    assert re.search(rf"mkdir -p {re.escape(datadir)}\b", dockerfile)
    owned = re.findall(rf"chown -R {re.escape(user)}(?::\S+)? (\S+)", dockerfile)
    assert any(datadir == folder or datadir.startswith(f"{folder}/") for folder in owned)
    assert f"ENV FLEET_WORKER__DATADIR={datadir}" in dockerfile


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(compose().get("volumes") or {})
    used = {source for s in services().values() for source in mounts(s).values() if source}
    assert used == declared


# --- images, health, restarts, ports ---------------------------------------------------------


def image_tag(image: str) -> str | None:
    """The tag of ``image`` (None: none, so :latest), or its digest."""
    if "@" in image:
        return image.partition("@")[2]
    last = image.rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("postgres:15", "15"),
        ("redis", None),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "RELEASE.2025-09-07T16-13-09Z"),
        ("registry.local:5000/team/app", None),
        ("postgres@sha256:abc", "sha256:abc"),
    ],
)
def test_image_tag(image: str, tag: str | None) -> None:
    assert image_tag(image) == tag


def test_every_image_is_pinned() -> None:
    """Catches minio/minio:latest (or no tag at all): every pull may bring another release, and
    a data format or a flag changes under a running deployment."""
    for name, service in services().items():
        if "build" in service:
            continue
        tag = image_tag(service["image"])
        assert tag not in (None, "", "latest"), f"{name}: {service['image']} is not pinned"
    base = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert base and all(image_tag(image) not in (None, "latest") for image in base)


def test_every_long_running_service_has_a_health_check() -> None:
    """Catches a service without one: depends_on cannot wait for it to be ready (the worker
    started before the registry answered), and `docker compose ps` cannot show it stuck."""
    running = long_running(services())
    assert {"kafka", "postgres", "redis", "mosquitto", "apicurio", "minio"} <= set(running)
    assert {"api", "worker", "mqtt-front"} <= set(running)
    for name, service in running.items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        assert test and not check.get("disable"), f"{name} has no health check"
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test}"


def test_depends_on_waits_only_for_what_can_report() -> None:
    """Catches service_healthy on a service without a health check (compose refuses to start)
    and a dependency on a service that does not exist."""
    all_services = services()
    for name, service in all_services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in all_services, f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if condition == "service_healthy":
                assert all_services[target].get("healthcheck"), f"{name} waits on {target}"


def test_long_running_services_restart_and_setup_steps_do_not() -> None:
    """Catches the api, worker or bridge without a restart policy (the docs rely on
    `restart: unless-stopped`: a crash or a host reboot would leave it down), and a setup step
    that restarts forever after finishing."""
    all_services = services()
    for name, service in long_running(all_services).items():
        assert service.get("restart") in KEEPS_RUNNING, f"{name}: restart {service.get('restart')}"
    assert {"api", "worker", "mqtt-front", "setup"} <= set(fleetstream_services())
    for name in one_shot(all_services):
        assert all_services[name].get("restart", "no") in ("no", "on-failure"), name


def fleetstream_services() -> dict[str, Mapping[str, Any]]:
    """The services built from this repository's Dockerfile (they run `fleetstream ...`)."""
    return {name: s for name, s in services().items() if "build" in s}


def published(service: Mapping[str, Any]) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port) of ``service``."""
    found: dict[int, tuple[str, int]] = {}
    for port in service.get("ports") or []:
        if isinstance(port, Mapping):
            address = str(port.get("host_ip", ANY_ADDRESS))
            found[int(port["target"])] = (address, int(port["published"]))
            continue
        spec = str(port).partition("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            found[int(parts[2])] = (parts[0], int(parts[1]))
        elif len(parts) == 2:
            found[int(parts[1])] = (ANY_ADDRESS, int(parts[0]))
    return found


@pytest.mark.parametrize(
    ("name", "setting", "host_setting"),
    [
        ("api", "FLEET_API__PORT", "FLEET_API__HOST"),
        ("worker", "FLEET_WORKER__WEB_PORT", "FLEET_WORKER__WEB_HOST"),
    ],
)
def test_documented_http_ports_are_published(name: str, setting: str, host_setting: str) -> None:
    """Catches the worker's web port left unpublished (no operator views, no Prometheus
    target), a container port that differs from the port the settings make the process
    listen on, and a process bound to 127.0.0.1 inside its container (unreachable through
    any published port)."""
    service = services()[name]
    env = environment(service)
    port = int(env.get(setting) or setting_default(setting))
    assert port == DOCUMENTED_PORTS[name]
    assert published(service).get(port, ("", 0))[1] == DOCUMENTED_PORTS[name]
    assert env.get(host_setting) == ANY_ADDRESS
    assert str(port) in str(service["healthcheck"]["test"])


def test_mqtt_port_is_published_and_is_the_settings_port() -> None:
    """Devices reach the MQTT front on the documented port; Mosquitto listens where the
    settings look for it (flows publish there)."""
    front = services()["mqtt-front"]
    assert MqttFrontSettings().port == DOCUMENTED_PORTS["mqtt-front"]
    assert published(front)[MqttFrontSettings().port][1] == DOCUMENTED_PORTS["mqtt-front"]
    assert f"listener {MqttSettings().port}" in _command_text(services()["mosquitto"])


def test_the_documented_ports_are_the_settings_defaults() -> None:
    """If a default port changes, the README and the published ports must follow."""
    assert ApiSettings().port == DOCUMENTED_PORTS["api"]
    assert WorkerSettings().web_port == DOCUMENTED_PORTS["worker"]
    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")])
    for port in DOCUMENTED_PORTS.values():
        assert f"127.0.0.1:{port}" in docs or f"-p {port}" in docs


def test_device_facing_ports_can_be_opened_to_the_network() -> None:
    """EDGE_BIND_ADDRESS moves the API and MQTT off loopback; the broker's internals stay."""
    opened = services({"EDGE_BIND_ADDRESS": ANY_ADDRESS})
    assert published(opened["api"])[8000][0] == ANY_ADDRESS
    assert published(opened["mqtt-front"])[1883][0] == ANY_ADDRESS
    assert published(opened["mosquitto"])[1884][0] == "127.0.0.1"
    assert published(opened["kafka"])[9092][0] == "127.0.0.1"
    assert published(services()["api"])[8000][0] == "127.0.0.1"


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $$SYS $SET", env) == (
        "x d d  $SYS x"
    )
    assert [name for name, _, _ in references("${A:-1} $$B ${C} $D")] == ["A", "C", "D"]

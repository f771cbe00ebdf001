"""Mosquitto config, Postgres helpers, probes and service selection (nothing is started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.stack import installer, manager, mosquitto, postgres, probes, users
from cli.stack.errors import StackError
from schemas.settings import Settings, StackSettings


def _mosquitto_config(user: str | None) -> list[str]:
    return mosquitto.render_config(
        1884,
        Path("/s/mosquitto/data"),
        user,
        plugin=Path("/usr/lib/x/mosquitto_dynamic_security.so"),
        dynsec_file=Path("/s/mosquitto/data/dynamic-security.json"),
        max_queued_messages=5000,
        max_packet_bytes=100_000,
    ).splitlines()


def test_mosquitto_config() -> None:
    lines = _mosquitto_config("mosquitto")
    assert "listener 1884 127.0.0.1" in lines
    assert "allow_anonymous false" in lines
    assert "plugin /usr/lib/x/mosquitto_dynamic_security.so" in lines
    assert "plugin_opt_config_file /s/mosquitto/data/dynamic-security.json" in lines
    assert "max_queued_messages 5000" in lines
    assert "max_packet_size 100000" in lines
    assert "persistence true" in lines
    assert "persistence_location /s/mosquitto/data/" in lines
    assert "log_dest stderr" in lines
    assert lines[-1] == "user mosquitto"
    assert not any(line.startswith("user") for line in _mosquitto_config(None))


def test_postgres_bindir_choice(tmp_path: Path) -> None:
    for version in ("13", "15", "notaversion"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "postgres").write_text("")
    found = postgres.installed_bindirs(tmp_path)
    assert sorted(found) == [13, 15]
    assert postgres.pick_bindir(found, None) == tmp_path / "15" / "bin"
    assert postgres.pick_bindir(found, 13) == tmp_path / "13" / "bin"
    with pytest.raises(StackError, match="PostgreSQL 16"):
        postgres.pick_bindir(found, 16)
    with pytest.raises(StackError):
        postgres.pick_bindir({}, None)


def test_postgres_bootstrap_script_quotes_values() -> None:
    script = postgres.bootstrap_script("app", "pa'ss", "db")
    assert "'pa''ss'" in script
    assert script.count("\\gexec") == 3
    assert "LOGIN CREATEDB" in script


def test_blocking_dir(tmp_path: Path) -> None:
    """The owner class applies to our own uid: without its x bit the folder blocks us."""
    locked = tmp_path / "locked"
    target = locked / "inner" / "data"
    target.mkdir(parents=True)
    uid, gids = os.geteuid(), set(os.getgroups())
    assert users.blocking_dir(target, uid, gids) is None
    locked.chmod(0o600)
    try:
        assert users.blocking_dir(target, uid, gids) == locked
    finally:
        locked.chmod(0o755)
    assert users.blocking_dir(tmp_path / "not" / "yet", uid, gids) is None


def test_probes_helpers() -> None:
    assert probes.parse_host_port("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert probes.parse_host_port("a:1,b:2") == ("a", 1)
    assert probes.parse_host_port("[::1]:9092") == ("::1", 9092)
    with pytest.raises(ValueError):
        probes.parse_host_port("no-port")
    assert len(probes.MQTT_CONNECT) == 14
    assert probes.MQTT_CONNECT[0] == 0x10 and probes.MQTT_CONNECT[1] == 12


def test_parse_java_major() -> None:
    assert installer.parse_java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert installer.parse_java_major('java version "1.8.0_292"') == 8
    assert installer.parse_java_major('openjdk version "21" 2023-09-19') == 21
    assert installer.parse_java_major("nothing") is None


def test_select_and_log_path(tmp_path: Path) -> None:
    assert manager.select(None) == [
        "kafka",
        "postgres",
        "redis",
        "mosquitto",
        "apicurio",
        "s3proxy",
    ]
    assert manager.select(["redis", "kafka", "redis"]) == ["kafka", "redis"]
    with pytest.raises(StackError, match="zookeeper"):
        manager.select(["zookeeper"])
    settings = Settings(stack=StackSettings(home=tmp_path))
    assert manager.log_path(settings, "redis") == tmp_path / "logs" / "redis.log"
    assert manager.tail(settings, "redis", 5) == ""


def test_status_of_an_empty_home_starts_nothing(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(home=tmp_path))
    states = manager.status(settings)
    assert [s.name for s in states] == list(manager.SERVICE_NAMES)
    assert all(s.pid is None and not s.healthy for s in states)
    assert not (tmp_path / "run").exists()


def test_missing_program_without_apt_names_the_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(installer, "can_use_apt", lambda: False)
    present = installer.Requirement("redis-server", lambda: True, ("redis-server",))
    installer.ensure([present], tmp_path / "apt.log", print)  # nothing missing: no-op
    absent = installer.Requirement("mosquitto", lambda: False, ("mosquitto", "mosquitto-clients"))
    with pytest.raises(StackError, match="mosquitto mosquitto-clients"):
        installer.ensure([present, absent], tmp_path / "apt.log", print)
    assert not (tmp_path / "apt.log").exists()

"""cli.stack.scram: what it refuses before it reaches a broker, and the users file it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.stack import scram
from cli.stack.errors import StackError
from cli.stack.kafka_security import ADMIN, PRINCIPALS, passwords, users_file
from schemas.settings import Settings, StackSettings


def _settings(home: Path, *, secure: bool = True) -> Settings:
    return Settings(stack=StackSettings(home=home, secure=secure))


def test_plain_mode_has_no_passwords_to_rotate(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="secure mode only"):
        scram.rotate(_settings(tmp_path, secure=False), ["api"], print)


def test_an_unknown_principal_is_refused_before_the_broker_is_asked(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unknown principals \\['root'\\]"):
        scram.rotate(_settings(tmp_path), ["api", "root"], print)
    assert not users_file(tmp_path).exists()


def test_admin_is_left_out_unless_named() -> None:
    assert ADMIN not in scram.DEFAULT
    assert set(scram.DEFAULT) == set(PRINCIPALS) - {ADMIN}


def test_the_users_file_is_replaced_whole_and_stays_private(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    known = passwords(tmp_path)
    scram.write_passwords(settings, {**known, "api": "new"})
    assert passwords(tmp_path) == {**known, "api": "new"}
    assert users_file(tmp_path).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in users_file(tmp_path).parent.iterdir()] == ["kafka-users.json"]

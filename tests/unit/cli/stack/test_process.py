"""Pid files, stale detection and command-line matching of the local stack (no service
started), and one-shot commands (``sh``, ``sleep``) with their output and time limit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cli.stack import process
from cli.stack.errors import StackError
from cli.stack.process import ProcessSignature


def _dead_pid() -> int:
    """A pid that cannot exist: above the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def _own_signature() -> ProcessSignature:
    cmdline = process.read_cmdline(os.getpid())
    return ProcessSignature(Path(cmdline[0]).name, tuple(cmdline[1:2]))


def test_read_pid_file(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert process.read_pid_file(pid_file) is None
    pid_file.write_text("not a pid\n")
    assert process.read_pid_file(pid_file) is None
    pid_file.write_text("0\n")
    assert process.read_pid_file(pid_file) is None
    process.write_pid_file(pid_file, 4242)
    assert process.read_pid_file(pid_file) == 4242


def test_dead_pid_file_is_stale_and_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "kafka.pid"
    process.write_pid_file(pid_file, _dead_pid())
    signature = ProcessSignature("java", ("kafka.Kafka",))
    assert process.live_pid(pid_file, signature) is None
    assert process.clear_stale_pid(pid_file, signature)
    assert not pid_file.exists()
    assert not process.clear_stale_pid(pid_file, signature)


def test_reused_pid_with_other_cmdline_is_stale(tmp_path: Path) -> None:
    """Our own (alive) pid recorded as "kafka": alive but not ours, so stale."""
    pid_file = tmp_path / "kafka.pid"
    process.write_pid_file(pid_file, os.getpid())
    signature = ProcessSignature("java", ("kafka.Kafka", str(tmp_path / "server.properties")))
    assert process.is_alive(os.getpid())
    assert process.live_pid(pid_file, signature) is None
    assert process.clear_stale_pid(pid_file, signature)


def test_live_matching_pid_is_kept(tmp_path: Path) -> None:
    pid_file = tmp_path / "me.pid"
    process.write_pid_file(pid_file, os.getpid())
    signature = _own_signature()
    assert process.live_pid(pid_file, signature) == os.getpid()
    assert not process.clear_stale_pid(pid_file, signature)
    assert pid_file.exists()


def test_stop_never_signals_a_pid_that_is_not_ours() -> None:
    signature = ProcessSignature("java", ("kafka.Kafka", "/nowhere/server.properties"))
    assert process.stop(os.getpid(), signature, grace_s=0.1) == "not running"
    assert process.stop(_dead_pid(), signature, grace_s=0.1) == "not running"


def test_signature_matching() -> None:
    props = "/home/x/.stack/kafka/config/server.properties"
    signature = ProcessSignature("java", ("kafka.Kafka", props))
    assert signature.matches(["/usr/bin/java", "-Xmx1g", "-cp", "lib/*", "kafka.Kafka", props])
    assert not signature.matches(["/usr/bin/java", "kafka.Kafka", "/other/server.properties"])
    assert not signature.matches(["/usr/bin/python3", "kafka.Kafka", props])
    assert not signature.matches([])
    assert not signature.matches(["/usr/bin/java", f"{props}.bak", "kafka.Kafka"])


def test_parse_cmdline() -> None:
    assert process.parse_cmdline(b"") == []
    assert process.parse_cmdline(b"redis-server\0--dir\0/a b\0") == [
        "redis-server",
        "--dir",
        "/a b",
    ]
    assert process.parse_cmdline(b"x\0\0y\0") == ["x", "", "y"]


def test_parse_stat_state_with_parentheses_in_name() -> None:
    assert process.parse_stat_state("123 (java) S 1 123 123 0") == "S"
    assert process.parse_stat_state("77 (we ird) name)) Z 1 77") == "Z"
    assert process.parse_stat_state("garbage") is None


def test_tail_lines_and_file_contains(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert process.tail_lines(log) == []
    started = "[KafkaRaftServer] Kafka Server started"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + started + "\n")
    assert process.tail_lines(log, 2) == ["line 99", started]
    assert process.file_contains(log, "Kafka Server started")
    assert not process.file_contains(log, "Kafka Server stopped")
    assert not process.file_contains(tmp_path / "missing.log", "x")


def test_rotate_log(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    process.rotate_log(log)
    log.write_text("first run\n")
    process.rotate_log(log)
    assert not log.exists()
    assert (tmp_path / "kafka.log.1").read_text() == "first run\n"


def test_wait_until_polls_until_true_or_deadline() -> None:
    calls = iter([False, False, True])
    assert process.wait_until(lambda: next(calls), timeout_s=5, interval_s=0.01)
    assert not process.wait_until(lambda: False, timeout_s=0.05, interval_s=0.01)


def test_a_streamed_command_hands_each_line_to_the_step_lines_as_it_prints() -> None:
    seen: list[str] = []
    token = process.step_lines.set(seen.append)
    try:
        result = process.run(["sh", "-c", "echo one; echo two >&2; echo three"], stream=True)
        quiet = process.run(["sh", "-c", "echo not streamed"])
    finally:
        process.step_lines.reset(token)
    assert seen == ["one", "two", "three"]
    assert result.returncode == 0 and result.stdout == "one\ntwo\nthree\n"
    assert quiet.stdout == "not streamed\n"


FOREVER = [sys.executable, "-c", "import threading; print('started'); threading.Event().wait()"]
"""A child that waits without end and reads no clock (faketime shifts the clocks of children)."""


def test_a_command_that_outlives_its_timeout_is_killed() -> None:
    with pytest.raises(StackError, match="did not finish within"):
        process.run(FOREVER, timeout_s=0.5, stream=True)
    with pytest.raises(StackError, match="did not finish within"):
        process.run(FOREVER, timeout_s=0.5)

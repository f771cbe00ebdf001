"""System packages the stack needs: find them, or install them with apt-get as root on Debian.

Nothing is installed unless something is missing; then ``apt-get update`` runs once and one
``apt-get install -y`` brings every missing package. Off Debian or without root, the error says
exactly which packages to install.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cli.stack import process
from cli.stack.errors import StackError

Progress = Callable[[str], None]

#: Kafka 4.x brokers need Java 17 or newer.
MIN_JAVA = 17


@dataclass(frozen=True)
class Requirement:
    """Something a service needs on the machine and the Debian packages that provide it."""

    what: str
    present: Callable[[], bool]
    apt_packages: tuple[str, ...]


def command(name: str, *packages: str) -> Requirement:
    """A command that must be on PATH."""
    return Requirement(name, lambda: shutil.which(name) is not None, packages)


def executable(path: Path, *packages: str) -> Requirement:
    """An executable at a fixed path."""
    return Requirement(str(path), lambda: os.access(path, os.X_OK), packages)


def java() -> Requirement:
    """``java`` of version 17 or newer."""
    return Requirement(f"java {MIN_JAVA}+", _java_ok, ("openjdk-17-jre-headless",))


def parse_java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output: '"17.0.15"' -> 17, '"1.8.0_292"' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _java_ok() -> bool:
    binary = shutil.which("java")
    if binary is None:
        return False
    result = process.run([binary, "-version"], timeout_s=60)
    major = parse_java_major(result.stdout)
    return major is not None and major >= MIN_JAVA


def can_use_apt() -> bool:
    """True when we are root on Debian with apt-get: the only case we install ourselves."""
    return (
        os.geteuid() == 0
        and shutil.which("apt-get") is not None
        and Path("/etc/debian_version").exists()
    )


def ensure(requirements: Iterable[Requirement], log: Path, progress: Progress) -> None:
    """Make sure every requirement is present, installing missing Debian packages if we can.

    Raises StackError naming what is missing and the packages to install otherwise.
    """
    missing = [req for req in requirements if not req.present()]
    if not missing:
        return
    packages = sorted({pkg for req in missing for pkg in req.apt_packages})
    names = ", ".join(req.what for req in missing)
    if not can_use_apt():
        raise StackError(
            f"missing {names}; install the Debian packages {' '.join(packages)} "
            f"(e.g. `sudo apt-get install -y {' '.join(packages)}`) and run again"
        )
    progress(f"installing {' '.join(packages)} with apt-get (needed: {names})…")
    _apt(["update"], log)
    _apt(["install", "-y", "--no-install-recommends", *packages], log)
    still = [req.what for req in missing if not req.present()]
    if still:
        raise StackError(f"still missing after apt-get install: {', '.join(still)}")


def _apt(args: list[str], log: Path) -> None:
    argv = ["apt-get", *args]
    result = process.run(
        argv, env={"DEBIAN_FRONTEND": "noninteractive"}, timeout_s=1800, stream=True
    )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n{result.stdout}\n")
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise StackError(f"`{' '.join(argv)}` failed (exit {result.returncode}):\n{tail}")

"""Java programs of the local stack from Maven Central: Maven runs, and runtime jars copied from
a POM's dependencies into a service's ``lib/``.

A copy counts only with its version marker, written after Maven succeeded, so a broken or
half-finished copy is fetched again.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cli.stack import process
from cli.stack.errors import StackError
from cli.stack.service import Progress

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
TIMEOUT_S = 1800.0
"""A first run downloads every jar into ``~/.m2``."""


def mvn(pom: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Maven in batch mode on ``pom`` (from its folder); its lines (downloads, build steps)
    are the progress line's step lines while it works."""
    argv = [shutil.which("mvn") or "mvn", "-B", "-f", str(pom), *args]
    return process.run(argv, cwd=pom.parent, timeout_s=TIMEOUT_S, stream=True)


def output_tail(result: subprocess.CompletedProcess[str]) -> str:
    """The last 30 lines Maven printed: where it says what went wrong."""
    return "\n".join(result.stdout.splitlines()[-30:])


def copy_dependencies(
    pom: Path, output: Path, version_property: str, version: str
) -> subprocess.CompletedProcess[str]:
    """Copy the runtime jars ``pom`` lists, with ``-D<version_property>=<version>``, into
    ``output``."""
    return mvn(
        pom,
        DEPENDENCY_PLUGIN,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={output}",
        f"-D{version_property}={version}",
    )


@dataclass(frozen=True)
class Jars:
    """The runtime jars of one Java program, as its POM lists them for a version."""

    service: str
    """The stack service (prefixes its messages)."""
    product: str
    pom: Path
    version_property: str
    """The POM property that selects the version (``kafka.version``)."""
    main_jar: str
    """The program's own jar, ``{version}`` in its name: Maven copied it, or it failed."""
    marker: str
    """The file in ``lib/`` that records the version of a complete copy."""
    size: str
    """Roughly how much Maven downloads the first time (for the progress line)."""

    def ready(self, lib: Path, version: str) -> bool:
        """True when ``lib`` holds a complete copy of the jars of ``version``."""
        try:
            recorded = (lib / self.marker).read_text(encoding="utf-8").strip()
        except OSError:
            return False
        return recorded == version and (lib / self.main_jar.format(version=version)).is_file()

    def fetch(self, lib: Path, version: str, progress: Progress) -> bool:
        """Copy the jars into ``lib`` with Maven unless they are already there; True when it
        copied them."""
        if self.ready(lib, version):
            return False
        progress(
            f"{self.service}: fetching {self.product} {version} jars with Maven… "
            f"({self.size}, cached in ~/.m2)"
        )
        if lib.exists():
            shutil.rmtree(lib)
        lib.mkdir(parents=True)
        result = copy_dependencies(self.pom, lib, self.version_property, version)
        if result.returncode != 0 or not (lib / self.main_jar.format(version=version)).is_file():
            raise StackError(
                f"{self.service}: Maven could not fetch the {self.product} {version} jars "
                f"(exit {result.returncode}):\n{output_tail(result)}"
            )
        (lib / self.marker).write_text(f"{version}\n", encoding="utf-8")
        return True

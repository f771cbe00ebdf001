"""Apicurio Registry: the schema registry of the local stack (Confluent-compatible API).

Apicurio publishes its registry on Maven Central only as jars, not as a runnable application,
so the first ``stack up`` builds one with Maven from ``infra/apicurio/`` (see the POM's
comments): it installs our build of the one missing piece (``config-index-deployment``) into
``~/.m2``, then runs quarkus-maven-plugin on the registry's jars. Files:
``<home>/apicurio/build`` (the runner jar, its ``lib/`` and a marker of what it was built from)
and ``<home>/apicurio/data`` (H2 database files: schema ids survive restarts). It listens on
127.0.0.1 at the port of ``FLEET_SCHEMA_REGISTRY__URL``; in secure mode it serves HTTPS only
there, with the local CA's ``apicurio`` certificate. The stack also installs ``kcat``
with it: the Kafka client the README's consumer examples use.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
from pathlib import Path

import httpx

from cli.stack import installer, probes
from cli.stack.certs import Pki
from cli.stack.errors import StackError
from cli.stack.installer import Requirement
from cli.stack.maven import mvn, output_tail
from cli.stack.paths import INFRA_DIR
from cli.stack.probes import LOCALHOST
from cli.stack.process import ProcessSignature
from cli.stack.service import LaunchSpec, Progress, Service

INFRA = INFRA_DIR / "apicurio"
POM = INFRA / "pom.xml"
DEPLOYMENT_POM = INFRA / "config-index-deployment" / "pom.xml"
MAVEN_SETTINGS = INFRA / "settings.xml"
RUNNER = "fleetstream-local-apicurio-1-runner.jar"
BUILD_MARKER = ".fleetstream-build"
JVM_FLAGS = ("-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


def build_inputs() -> list[Path]:
    """Every file the build depends on: a change to any of them rebuilds the registry."""
    sources = sorted((INFRA / "config-index-deployment" / "src").rglob("*.java"))
    return [POM, DEPLOYMENT_POM, MAVEN_SETTINGS, *sources]


def build_fingerprint(files: list[Path]) -> str:
    """SHA-256 over the names and contents of ``files``."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Apicurio(Service):
    """Healthy: ``/health/ready`` answers 200 and the ccompat API lists subjects."""

    name = "apicurio"
    stop_grace_s = 20.0

    @property
    def build_dir(self) -> Path:
        return self.dir / "build"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def runner(self) -> Path:
        return self.build_dir / RUNNER

    @property
    def ports(self) -> tuple[int, ...]:
        return (probes.url_port(self.settings.schema_registry.url),)

    @property
    def signature(self) -> ProcessSignature:
        return ProcessSignature("java", ("-jar", str(self.runner)))

    def requirements(self) -> tuple[Requirement, ...]:
        return (
            installer.java(),
            installer.command("mvn", "maven"),
            installer.command("kcat", "kcat"),
        )

    def prepare(self, progress: Progress) -> LaunchSpec:
        self.build(progress)
        self.data.mkdir(parents=True, exist_ok=True)
        port = self.ports[0]
        argv = (
            shutil.which("java") or "java",
            *JVM_FLAGS,
            f"-Xmx{self.settings.stack.apicurio_heap}",
            f"-Dquarkus.http.host={LOCALHOST}",
            f"-Dquarkus.http.port={port}",
            *self._tls_flags(port),
            "-jar",
            str(self.runner),
        )
        env = {
            "HTTP_PORT": str(port),
            "REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{self.data / 'registry'}",
            "QUARKUS_PROFILE": "prod",
        }
        return LaunchSpec(argv=argv, cwd=self.dir, env=env)

    def _tls_flags(self, port: int) -> tuple[str, ...]:
        """Secure mode: HTTPS only on ``port`` with the local CA's ``apicurio`` certificate
        (read at start: a rotated one is served after a restart)."""
        if not self.settings.stack.secure:
            return ()
        pki = self._pki
        return (
            f"-Dquarkus.http.ssl-port={port}",
            f"-Dquarkus.http.ssl.certificate.files={pki.cert('apicurio')}",
            f"-Dquarkus.http.ssl.certificate.key-files={pki.key('apicurio')}",
            "-Dquarkus.http.insecure-requests=disabled",
        )

    @property
    def _pki(self) -> Pki:
        return Pki.of_home(self.settings.stack.home)

    def build(self, progress: Progress) -> None:
        """Build the runner jar with Maven unless it was built from the current infra files."""
        fingerprint = build_fingerprint(build_inputs())
        marker = self.build_dir / BUILD_MARKER
        if self.runner.is_file() and marker.is_file() and marker.read_text().strip() == fingerprint:
            return
        progress("apicurio: building the registry with Maven… (~130 MB of jars, cached in ~/.m2)")
        if self.build_dir.exists():
            shutil.rmtree(self.build_dir)
        scratch = self.dir / "deployment-build"
        self._maven(DEPLOYMENT_POM, "install", f"-Dfleet.build.dir={scratch}")
        self._maven(POM, "package", f"-Dfleet.build.dir={self.build_dir}")
        shutil.rmtree(scratch, ignore_errors=True)
        if not self.runner.is_file():
            raise StackError(f"apicurio: Maven finished but {self.runner} is missing")
        marker.write_text(fingerprint + "\n", encoding="utf-8")
        progress(f"apicurio: built {self.runner}")

    def _maven(self, pom: Path, goal: str, *args: str) -> None:
        result = mvn(pom, "-s", str(MAVEN_SETTINGS), "-DskipTests", *args, goal)
        if result.returncode != 0:
            raise StackError(
                f"apicurio: `mvn {goal}` of {pom} failed (exit {result.returncode}):\n"
                f"{output_tail(result)}"
            )

    def healthy(self) -> bool:
        secure = self.settings.stack.secure
        base = f"{'https' if secure else 'http'}://{LOCALHOST}:{self.ports[0]}"
        verify = ssl.create_default_context(cafile=self._pki.ca_cert) if secure else True
        try:
            with httpx.Client(timeout=2.0, verify=verify) as client:
                ready = client.get(f"{base}/health/ready")
                subjects = client.get(f"{base}/apis/ccompat/v7/subjects")
        except httpx.HTTPError:
            return False
        return ready.status_code == 200 and subjects.status_code == 200

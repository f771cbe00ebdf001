"""S3Proxy: the S3-compatible object store of the local stack (the blob store's ``s3`` backend).

S3Proxy serves the S3 API over jclouds' filesystem blob store; it is run from its Maven Central
jars like Kafka (``infra/s3proxy/pom.xml``, copied to ``<home>/s3proxy/lib``). Files:
``<home>/s3proxy/config/s3proxy.properties`` (rendered every start: endpoint on 127.0.0.1 at the
port of ``FLEET_BLOB__S3_ENDPOINT``, AWS v2/v4 signatures with the identity and credential of
``FLEET_BLOB__S3_ACCESS_KEY``/``__S3_SECRET_KEY``; mode 0600, it holds the secret) and
``<home>/s3proxy/data`` (one folder per bucket). ``after_healthy`` creates the bucket. In
secure mode it serves HTTPS only on that port, with the local CA's ``s3proxy`` certificate
(a PKCS#12 keystore made at each start beside the properties, whose password they hold).

Like apicurio brings kcat, this service also brings ``ffmpeg``: the API captures RTSP frames
with it (``api/media/rtsp.py``), so ``stack up``/``setup`` installs it on a fresh machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cli.stack import installer, probes
from cli.stack.certs import Pki
from cli.stack.installer import Requirement
from cli.stack.maven import Jars
from cli.stack.paths import INFRA_DIR
from cli.stack.probes import LOCALHOST
from cli.stack.process import ProcessSignature
from cli.stack.service import LaunchSpec, Progress, Service
from schemas.settings import BlobSettings

MAIN_CLASS = "org.gaul.s3proxy.Main"
POM = INFRA_DIR / "s3proxy" / "pom.xml"
LOGBACK = INFRA_DIR / "s3proxy" / "logback.xml"
JARS = Jars(
    service="s3proxy",
    product="S3Proxy",
    pom=POM,
    version_property="s3proxy.version",
    main_jar="s3proxy-{version}.jar",
    marker=".s3proxy-version",
    size="~55 MB",
)
JVM_FLAGS = ("-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


def render_properties(
    blob: BlobSettings, port: int, data_dir: Path, keystore: tuple[Path, str] | None = None
) -> str:
    """S3Proxy's configuration: filesystem provider, 127.0.0.1 only, signed requests only;
    with a ``keystore`` (path, password), HTTPS only on ``port`` (secure mode)."""
    endpoint = {"s3proxy.endpoint": f"http://{LOCALHOST}:{port}"}
    if keystore is not None:
        endpoint = {
            "s3proxy.secure-endpoint": f"https://{LOCALHOST}:{port}",
            "s3proxy.keystore-path": str(keystore[0]),
            "s3proxy.keystore-password": keystore[1],
        }
    lines = {
        **endpoint,
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": blob.s3_access_key,
        "s3proxy.credential": blob.s3_secret_key.get_secret_value(),
        "jclouds.provider": "filesystem",
        "jclouds.filesystem.basedir": str(data_dir),
        "jclouds.region": blob.s3_region,
    }
    return "".join(f"{key}={_escape(value)}\n" for key, value in lines.items())


def _escape(value: str) -> str:
    """A java.util.Properties value: backslashes doubled, nothing else special on one line."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


class S3Proxy(Service):
    """Healthy: a signed ListBuckets with the configured credentials answers."""

    name = "s3proxy"
    stop_grace_s = 10.0

    @property
    def lib(self) -> Path:
        return self.dir / "lib"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def properties(self) -> Path:
        return self.dir / "config" / "s3proxy.properties"

    @property
    def ports(self) -> tuple[int, ...]:
        return (probes.url_port(self.settings.blob.s3_endpoint),)

    @property
    def signature(self) -> ProcessSignature:
        return ProcessSignature("java", (MAIN_CLASS, str(self.properties)))

    def requirements(self) -> tuple[Requirement, ...]:
        return (
            installer.java(),
            installer.command("mvn", "maven"),
            installer.command("ffmpeg", "ffmpeg"),
        )

    def prepare(self, progress: Progress) -> LaunchSpec:
        self.fetch_jars(progress)
        self.data.mkdir(parents=True, exist_ok=True)
        self.write_properties()
        argv = (
            shutil.which("java") or "java",
            *JVM_FLAGS,
            f"-Xmx{self.settings.stack.s3proxy_heap}",
            f"-Dlogback.configurationFile={LOGBACK}",
            "-cp",
            f"{self.lib}/*",
            MAIN_CLASS,
            "--properties",
            str(self.properties),
        )
        return LaunchSpec(argv=argv, cwd=self.dir)

    def fetch_jars(self, progress: Progress) -> None:
        """Copy S3Proxy's runtime jars into lib/ with Maven unless they are already there."""
        JARS.fetch(self.lib, self.settings.stack.s3proxy_version, progress)

    def write_properties(self) -> None:
        self.properties.parent.mkdir(parents=True, exist_ok=True)
        text = render_properties(self.settings.blob, self.ports[0], self.data, self._keystore())
        fd = os.open(self.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)

    def _keystore(self) -> tuple[Path, str] | None:
        """Secure mode: a fresh keystore of the CA's ``s3proxy`` certificate (made at each
        start, so a rotated certificate is served after a restart) and its password."""
        if not self.settings.stack.secure:
            return None
        path, password = self.properties.parent / "s3proxy.p12", secrets.token_urlsafe(24)
        self._pki.pkcs12("s3proxy", path, password)
        return path, password

    @property
    def _pki(self) -> Pki:
        return Pki.of_home(self.settings.stack.home)

    def healthy(self) -> bool:
        if not probes.tcp_open(self.ports[0]):
            return False
        try:
            self._client().list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True

    def after_healthy(self, progress: Progress) -> None:
        bucket = self.settings.blob.s3_bucket
        client = self._client()
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket)
            progress(f"s3proxy: created bucket {bucket}")

    def _client(self) -> Any:  # botocore's S3 client is generated at run time
        blob = self.settings.blob
        session = botocore.session.get_session()
        scheme = "https" if self.settings.stack.secure else "http"
        return session.create_client(
            "s3",
            endpoint_url=f"{scheme}://{LOCALHOST}:{self.ports[0]}",
            verify=str(self._pki.ca_cert) if self.settings.stack.secure else None,
            region_name=blob.s3_region,
            aws_access_key_id=blob.s3_access_key,
            aws_secret_access_key=blob.s3_secret_key.get_secret_value(),
            config=Config(
                connect_timeout=2,
                read_timeout=3,
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
            ),
        )

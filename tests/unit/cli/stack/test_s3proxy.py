"""S3Proxy's configuration and jar marker (nothing is started)."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

from pydantic import SecretStr

from cli.stack import probes, s3proxy
from cli.stack.certs import Pki
from cli.stack.s3proxy import S3Proxy
from schemas.settings import BlobSettings, Settings, StackSettings


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_properties_bind_loopback_require_signatures_and_use_the_settings() -> None:
    blob = BlobSettings(s3_access_key="ak", s3_secret_key=SecretStr("sk\\x"))
    props = _props(s3proxy.render_properties(blob, 19000, Path("/data")))
    assert props["s3proxy.endpoint"] == "http://127.0.0.1:19000"
    assert props["s3proxy.authorization"] == "aws-v2-or-v4"
    assert props["s3proxy.identity"] == "ak"
    assert props["s3proxy.credential"] == "sk\\\\x"  # escaped for java.util.Properties
    assert props["jclouds.provider"] == "filesystem"
    assert props["jclouds.filesystem.basedir"] == "/data"


def test_port_comes_from_the_endpoint_setting() -> None:
    assert probes.url_port("http://127.0.0.1:9100") == 9100
    assert probes.url_port("https://s3.example") == 443
    settings = Settings(blob=BlobSettings(s3_endpoint="http://127.0.0.1:9100"))
    assert S3Proxy(settings).ports == (9100,)


def test_properties_file_is_private(tmp_path: Path) -> None:
    service = S3Proxy(Settings(stack=StackSettings(home=tmp_path)))
    service.write_properties()
    mode = stat.S_IMODE(service.properties.stat().st_mode)
    assert mode == 0o600
    assert service.signature.matches(
        ["/usr/bin/java", "-cp", "x", s3proxy.MAIN_CLASS, "--properties", str(service.properties)]
    )


def test_jars_count_only_with_the_marker_of_their_version(tmp_path: Path) -> None:
    assert not s3proxy.JARS.ready(tmp_path, "3.0.0")
    (tmp_path / "s3proxy-3.0.0.jar").write_bytes(b"jar")
    assert not s3proxy.JARS.ready(tmp_path, "3.0.0")
    (tmp_path / s3proxy.JARS.marker).write_text("3.0.0\n")
    assert s3proxy.JARS.ready(tmp_path, "3.0.0")
    assert not s3proxy.JARS.ready(tmp_path, "3.1.0")


def test_secure_mode_serves_https_only_from_a_private_keystore(tmp_path: Path) -> None:
    settings = Settings(
        stack=StackSettings(home=tmp_path, secure=True),
        blob=BlobSettings(s3_endpoint="https://127.0.0.1:9100"),
    )
    Pki.of_home(tmp_path).ensure(lambda _: None, names=("s3proxy",))
    service = S3Proxy(settings)
    service.write_properties()
    props = _props(service.properties.read_text(encoding="utf-8"))
    assert "s3proxy.endpoint" not in props
    assert props["s3proxy.secure-endpoint"] == "https://127.0.0.1:9100"
    keystore = Path(props["s3proxy.keystore-path"])
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    listing = subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "pkcs12", "-in", str(keystore), "-nokeys", "-passin",  # noqa: S607
         f"pass:{props['s3proxy.keystore-password']}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert re.search(r"subject=.*CN ?= ?s3proxy", listing), listing

"""The local stack's certificate authority, made with the openssl command (secure mode).

``FLEET_STACK__SECURE=true`` makes ``fleetstream stack up`` create, under ``<home>/pki``:
``ca.pem`` + ``ca.key`` (the CA, ten years), and for each name of :data:`SERVERS` a key
(``<name>.key``) and a certificate signed by the CA (``<name>.pem``, 825 days, SAN
``localhost`` and ``127.0.0.1``, usable as server and as client certificate: the Kafka node
shows its own to its controller listener). Keys are written 0600 and never leave the stack home
(which git ignores). ``fleetstream stack certs rotate`` issues new server certificates with the
same CA, so clients that trust ``ca.pem`` keep working; services read their certificate at start,
so they pick the new one up with a restart. ``--ca`` makes a new CA as well (every client must
then be given the new ``ca.pem``).

The openssl command, not the ``cryptography`` package: that package is not in the lock, and
Debian's openssl is on every machine that runs the stack.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cli.stack import process
from cli.stack.errors import StackError
from cli.stack.service import Progress

#: One server certificate per service that serves TLS in secure mode.
SERVERS: Final[tuple[str, ...]] = (
    "kafka",
    "api",
    "worker",
    "mqtt-front",
    "postgres",
    "redis",
    "s3proxy",
    "apicurio",
)
CA_DAYS: Final = 3650
SERVER_DAYS: Final = 825
RSA_BITS: Final = 2048
CA_SUBJECT: Final = "/O=fleetstream/CN=fleetstream local CA"
EXTENSIONS: Final = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
)


@dataclass(frozen=True)
class Pki:
    """The CA and server certificates of one stack home (``<home>/pki``)."""

    root: Path

    @classmethod
    def of_home(cls, home: Path) -> Pki:
        return cls(home / "pki")

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    def keystore(self, name: str) -> Path:
        """Key and certificate in one PEM file (Kafka's ``ssl.keystore.type=PEM``)."""
        return self.root / f"{name}.keystore.pem"

    def ensure(self, progress: Progress, names: Iterable[str] = SERVERS) -> None:
        """Make the CA and each missing server certificate (idempotent)."""
        _need_openssl()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            self._make_ca()
            progress(f"pki: new local CA {self.ca_cert}")
        for name in names:
            if not (self.cert(name).exists() and self.key(name).exists()):
                self.issue(name)
                progress(f"pki: certificate for {name} at {self.cert(name)}")

    def rotate(self, progress: Progress, *, new_ca: bool = False) -> list[str]:
        """Issue new server certificates (and a new CA when ``new_ca``); the names issued."""
        _need_openssl()
        if new_ca or not self.ca_key.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self._make_ca()
            progress(f"pki: new local CA {self.ca_cert}; give clients the new one")
        issued = [name for name in SERVERS]
        for name in issued:
            self.issue(name)
            progress(f"pki: new certificate for {name}; restart it to serve the new one")
        return issued

    def issue(self, name: str) -> None:
        """A new key and CA-signed certificate for ``name`` (CN=name), replacing any old one."""
        key, csr, ext = self.key(name), self.root / f"{name}.csr", self.root / f"{name}.ext"
        _new_key(key)
        _openssl(
            "req", "-new", "-key", str(key), "-subj", f"/O=fleetstream/CN={name}", "-out", str(csr)
        )
        ext.write_text(EXTENSIONS, encoding="ascii")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.ca_cert),
            "-CAkey",
            str(self.ca_key),
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            str(SERVER_DAYS),
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(self.cert(name)),
        )
        csr.unlink()
        ext.unlink()
        _write_private(
            self.keystore(name),
            key.read_text(encoding="ascii") + self.cert(name).read_text(encoding="ascii"),
        )

    def pkcs12(self, name: str, path: Path, password: str) -> None:
        """``name``'s key and certificate as a PKCS#12 keystore at ``path`` (0600), for Java
        servers that take no PEM files (S3Proxy)."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        _openssl(
            "pkcs12",
            "-export",
            "-inkey",
            str(self.key(name)),
            "-in",
            str(self.cert(name)),
            "-name",
            name,
            "-out",
            str(path),
            "-passout",
            f"pass:{password}",
        )

    def _make_ca(self) -> None:
        _new_key(self.ca_key)
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(self.ca_key),
            "-sha256",
            "-days",
            str(CA_DAYS),
            "-subj",
            CA_SUBJECT,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            str(self.ca_cert),
        )


def _new_key(path: Path) -> None:
    """An unencrypted PKCS#8 RSA key, created 0600 (never readable by others, even briefly)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{RSA_BITS}", "-out", str(path)
    )
    path.chmod(0o600)


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)


def _need_openssl() -> None:
    if shutil.which("openssl") is None:
        raise StackError("secure mode needs the openssl command (Debian package openssl)")


def _openssl(*args: str) -> None:
    result = process.run(["openssl", *args], timeout_s=60)
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed:\n{result.stdout[-2000:]}")

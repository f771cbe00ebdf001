"""Secure mode for the stack's Postgres and Redis: their TLS server options.

Both serve TLS only, with a certificate of the local CA (``cli/stack/certs.py``) for
``localhost`` and ``127.0.0.1``; neither asks clients for certificates (clients log in with a
password, Postgres, or not at all, Redis on 127.0.0.1).

* **Postgres** keeps its port and turns ``ssl=on``; its own host-based rules
  (:data:`SECURE_HBA`) accept TCP logins only over TLS (``hostssl``), so a clear-text client
  is refused at login. Postgres insists that its key is owned by the user it runs as and
  unreadable by others, and that user cannot enter ``<home>/pki`` (0700): the certificate and
  key are copied into the cluster folder at each start, which is also how a rotated
  certificate is picked up.
* **Redis** moves its one port to TLS (``tls-port``) and closes the clear-text port
  (``port 0``): nothing on the machine can reach it in clear text, and a client left in
  clear text fails at once instead of writing to an unprotected port.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from cli.stack import users
from cli.stack.certs import Pki
from cli.stack.process import RunAs

#: pg_hba.conf in secure mode: the Unix socket as in plain mode, TCP only over TLS.
SECURE_HBA: Final = (
    "local all all trust\n"
    "hostssl all all 127.0.0.1/32 scram-sha-256\n"
    "hostssl all all ::1/128 scram-sha-256\n"
)


def postgres_options(pki: Pki, folder: Path, run_as: RunAs | None) -> tuple[str, ...]:
    """``postgres -c`` settings serving TLS from copies of the CA's ``postgres`` certificate
    in ``folder`` (made 0700, owned by ``run_as``), with :data:`SECURE_HBA`."""
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    cert, key, hba = folder / "server.pem", folder / "server.key", folder / "pg_hba.conf"
    shutil.copyfile(pki.cert("postgres"), cert)
    key.unlink(missing_ok=True)
    key.touch(mode=0o600)
    shutil.copyfile(pki.key("postgres"), key)
    key.chmod(0o600)
    hba.write_text(SECURE_HBA, encoding="ascii")
    if run_as is not None:
        users.chown_tree(folder, run_as)
    return (
        "ssl=on",
        f"ssl_cert_file={cert}",
        f"ssl_key_file={key}",
        f"hba_file={hba}",
    )


def redis_arguments(pki: Pki, port: int) -> tuple[str, ...]:
    """redis-server arguments: TLS on ``port``, the clear-text port closed."""
    return (
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(pki.cert("redis")),
        "--tls-key-file", str(pki.key("redis")),
        "--tls-ca-cert-file", str(pki.ca_cert),
        "--tls-auth-clients", "no",
    )  # fmt: skip

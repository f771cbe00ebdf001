"""PostgreSQL: one cluster of Debian's server binaries, owned by an unprivileged OS user.

Files: ``<home>/postgres/data`` (initdb'd once, mode 0700), ``<home>/postgres/run`` (its Unix
socket, not /var/run/postgresql); see ``Postgres.cluster_dir`` for checkouts the Postgres user
cannot reach. Postgres refuses to run as root, so under root it runs as
``settings.stack.postgres_os_user`` (created if missing). Local socket logins are trusted (only
that user can reach the socket folder); TCP logins on 127.0.0.1 need a SCRAM password, and in
secure mode TLS as well (``cli/stack/service_tls.py``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import signal
from pathlib import Path

from cli.stack import process, service_tls, users
from cli.stack.certs import Pki
from cli.stack.errors import StackError
from cli.stack.installer import Requirement
from cli.stack.process import ProcessSignature, RunAs
from cli.stack.service import LaunchSpec, Progress, Service

DEBIAN_ROOT = Path("/usr/lib/postgresql")
FALLBACK_ROOT = Path("/var/lib/fleetstream")
SUPERUSER = "postgres"
SERVER_SETTINGS = (
    "shared_buffers=128MB",
    "max_connections=100",
    "fsync=on",
    "logging_collector=off",
    "log_destination=stderr",
)


def installed_bindirs(root: Path = DEBIAN_ROOT) -> dict[int, Path]:
    """Major version -> bin folder of every PostgreSQL under ``root`` that has a server."""
    found: dict[int, Path] = {}
    for candidate in root.glob("*/bin"):
        major = candidate.parent.name
        if re.fullmatch(r"\d+", major) and (candidate / "postgres").is_file():
            found[int(major)] = candidate
    return found


def pick_bindir(installed: dict[int, Path], data_version: int | None) -> Path:
    """The binaries for a data folder of ``data_version`` (None: not created yet -> newest)."""
    if data_version is None:
        if not installed:
            raise StackError("postgres: no PostgreSQL server under /usr/lib/postgresql")
        return installed[max(installed)]
    if data_version not in installed:
        raise StackError(
            f"postgres: the data folder was made by PostgreSQL {data_version}, but only "
            f"{sorted(installed)} is installed; install postgresql-{data_version} or remove it"
        )
    return installed[data_version]


def sql_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


def bootstrap_script(role: str, password: str, database: str) -> str:
    """psql input that creates/updates the app role and creates its database, idempotently."""
    r, p, d = sql_literal(role), sql_literal(password), sql_literal(database)
    # Every value is quoted by sql_literal, and the script is psql input, not a query of ours.
    create_role = f"SELECT format('CREATE ROLE %I', {r}) "
    role_exists = f"SELECT FROM pg_roles WHERE rolname = {r}"
    alter_role = f"SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', {r}, {p})"
    create_db = f"SELECT format('CREATE DATABASE %I OWNER %I', {d}, {r}) "
    db_exists = f"SELECT FROM pg_database WHERE datname = {d}"
    return (
        f"{create_role}WHERE NOT EXISTS ({role_exists})\\gexec\n"
        f"{alter_role}\\gexec\n"
        f"{create_db}WHERE NOT EXISTS ({db_exists})\\gexec\n"
    )


class Postgres(Service):
    """Healthy: ``pg_isready -h 127.0.0.1 -p <port>`` reports that it accepts connections."""

    name = "postgres"
    # SIGINT is the "fast" shutdown: open sessions are rolled back. SIGTERM would wait for every
    # client (a running worker pool) to disconnect.
    stop_signal = signal.SIGINT
    stop_grace_s = 30.0

    @functools.cached_property
    def cluster_dir(self) -> Path:
        """Where the cluster lives: ``<home>/postgres`` when the Postgres OS user can reach it.

        A checkout under a folder closed to other users (``/root`` is 0700) cannot host a cluster
        run by an unprivileged user; then the cluster goes to a folder of its own under
        ``/var/lib/fleetstream``, named after the stack home so two checkouts never share one.
        """
        if not users.is_root():
            return self.dir
        user = users.lookup(self.settings.stack.postgres_os_user)
        uid, gids = (user.uid, users.groups_of(user)) if user else (-1, set[int]())
        if users.blocking_dir(self.dir, uid, gids) is None:
            return self.dir
        return FALLBACK_ROOT / hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]

    @property
    def data(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "run"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.postgres.port,)

    @property
    def signature(self) -> ProcessSignature:
        return ProcessSignature("postgres", (str(self.data),))

    def requirements(self) -> tuple[Requirement, ...]:
        return (
            Requirement("PostgreSQL server", lambda: bool(installed_bindirs()), ("postgresql",)),
        )

    def bindir(self) -> Path:
        version_file = self.data / "PG_VERSION"
        data_version = None
        if version_file.exists():
            text = version_file.read_text(encoding="ascii").strip()
            data_version = int(text) if text.isdigit() else None
        return pick_bindir(installed_bindirs(), data_version)

    def run_as(self) -> RunAs | None:
        """Under root, the unprivileged OS user (created if missing); otherwise None (us)."""
        if not users.is_root():
            return None
        return users.ensure_system_user(self.settings.stack.postgres_os_user)

    def prepare(self, progress: Progress) -> LaunchSpec:
        run_as = self.run_as()
        self._make_dirs(run_as, progress)
        self._initdb(run_as, progress)
        port = str(self.settings.postgres.port)
        options = (
            "listen_addresses=127.0.0.1",
            f"port={port}",
            f"unix_socket_directories={self.socket_dir}",
            *SERVER_SETTINGS,
            *self._tls_options(run_as),
        )
        argv = [str(self.bindir() / "postgres"), "-D", str(self.data)]
        for option in options:
            argv += ["-c", option]
        return LaunchSpec(argv=tuple(argv), cwd=self.cluster_dir, run_as=run_as)

    def _tls_options(self, run_as: RunAs | None) -> tuple[str, ...]:
        """Secure mode: TLS only (``cli/stack/service_tls.py``); plain mode: none."""
        if not self.settings.stack.secure:
            return ()
        pki = Pki.of_home(self.settings.stack.home)
        return service_tls.postgres_options(pki, self.cluster_dir / "tls", run_as)

    def _make_dirs(self, run_as: RunAs | None, progress: Progress) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.cluster_dir != self.dir:
            progress(
                f"postgres: {self.dir} is closed to other users; cluster in {self.cluster_dir}"
            )
            FALLBACK_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
            self.cluster_dir.mkdir(mode=0o755, exist_ok=True)
        for folder in (self.data, self.socket_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)
            if run_as is not None:
                users.chown_tree(folder, run_as)
        if run_as is not None:
            blocked = users.blocking_dir(self.data, run_as.uid, users.groups_of(run_as))
            if blocked is not None:
                raise StackError(
                    f"postgres: OS user {run_as.name!r} cannot enter {blocked} (no search "
                    f"permission), so it cannot reach {self.data}; allow it (chmod o+x "
                    f"{blocked}) or set FLEET_STACK__HOME to a folder it can reach"
                )

    def _initdb(self, run_as: RunAs | None, progress: Progress) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        progress(f"postgres: initdb {self.data}")
        argv = [
            str(self.bindir() / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
        ]
        result = process.run(argv, cwd=self.cluster_dir, run_as=run_as, timeout_s=300)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-30:])
            raise StackError(f"postgres: initdb failed (exit {result.returncode}):\n{tail}")

    def healthy(self) -> bool:
        port = str(self.settings.postgres.port)
        try:
            argv = [str(self.bindir() / "pg_isready"), "-h", "127.0.0.1", "-p", port, "-t", "2"]
            return process.run(argv, timeout_s=10).returncode == 0
        except StackError:
            return False

    def after_healthy(self, progress: Progress) -> None:
        """Create (or update the password of) the app role and create its database."""
        pg = self.settings.postgres
        script = bootstrap_script(pg.user, pg.password.get_secret_value(), pg.database)
        argv = [
            str(self.bindir() / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(pg.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-f",
            "-",
        ]
        result = process.run(
            argv, cwd=self.cluster_dir, run_as=self.run_as(), input_text=script, timeout_s=60
        )
        if result.returncode != 0:
            raise StackError(
                f"postgres: could not create role {pg.user!r} / database {pg.database!r}:\n"
                f"{result.stdout.strip()}"
            )

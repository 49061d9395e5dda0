"""A real PostgreSQL for the tests: Debian's server binaries, run as the ``postgres`` system user.

``PostgresServer`` runs initdb and pg_ctl from /usr/lib/postgresql/*/bin through ``runuser``
(the tests run as root, and PostgreSQL refuses to run as root) in a temporary directory that
user owns, listening on 127.0.0.1 on a free port with trust authentication (loopback only,
and the data dies with the session). ``create_database()`` gives a fresh database each time.

Fixtures (import them into a conftest, or into a test module, by name):
    postgres_server    session: the running server; stopped at the end of the session
    postgres_url       session: a URL to one database made for the session
    postgres_database  function: a URL to a fresh, empty database for this test

The binaries missing is a FAILURE, never a skip: ``make test`` installs Debian's
``postgresql`` package, and the roles' multi-worker tests depend on it.

Speed over crash safety, on purpose: ``fsync=off`` (the tests kill role processes, never this
server or the machine, so PostgreSQL's own commits stay intact).
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
_counter = itertools.count(1)


def server_binaries() -> Path:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl; fails the test otherwise."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else -1)
    for directory in reversed(candidates):
        if Path(directory, "initdb").is_file() and Path(directory, "pg_ctl").is_file():
            return Path(directory)
    pytest.fail("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: `make test` installs the "
                "Debian package `postgresql` (apt-get install postgresql)", pytrace=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin = server_binaries()
        try:
            self._user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            pytest.fail(f"no system user {SYSTEM_USER!r}: `make test` installs the Debian package `postgresql`",
                        pytrace=False)
        self.base = Path(tempfile.mkdtemp(prefix="milagro-pg-"))
        os.chown(self.base, self._user.pw_uid, self._user.pw_gid)
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "server.log"
        self.port: int | None = None
        self._running = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = ["runuser", "-u", SYSTEM_USER, "--", *args]
        result = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                               f"server log:\n{log}")
        return result

    def start(self) -> "PostgresServer":
        self._run("mkdir", "-m", "0700", str(self.sockets))
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth-local=trust",
                  "--auth-host=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(5):            # a free port can be taken between probe and listen
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
                       "-c fsync=off -c full_page_writes=off -c max_connections=200")
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "60", "start")
            except RuntimeError:
                if attempt == 4:
                    raise
                continue
            break
        self._running = True
        atexit.register(self.stop)          # also on an interrupted session
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self._running:
            self._running = False
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database("session")


@pytest.fixture
def postgres_database(postgres_server) -> str:
    return postgres_server.create_database()

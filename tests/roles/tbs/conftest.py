"""Fixtures for the TBS's tests.

``tbs_server``: a factory (module scope) that starts ``milagro tbs serve`` (gunicorn) as a
subprocess against the world's chain, served on loopback by a ChainServer (``tbs_chain``), the
way tests/roles/idp/served.py does for the IdP. Each call gets its own home unless one is
given, so a test can restart a TBS on the same home (after ``kill()``, SIGKILL)::

    def test_restart(tbs_server):
        tbs = tbs_server("tbs-a", batch_wait=5)
        ...
        tbs.kill()
        again = tbs.restart()          # same home, port and options

The TBS never mines on regtest: the test mines (``world.source.mine``). ``PatClient``
(patclient.py) plays a PAT from the test side.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.role_process import RoleProcess, start_announcing

START_TIMEOUT = 180


@dataclass(kw_only=True)
class TbsProcess(RoleProcess):
    base_url: str
    port: int
    ca_file: str
    name: str
    locator: dict
    admin_port: int | None
    chain_dir: Path
    options: dict
    registry: list | None = field(default=None, repr=False)     # the fixture's, to stop at the end

    @property
    def admin_url(self) -> str | None:
        return self.announced.get("admin_url")

    def kill(self) -> None:
        """SIGKILL to gunicorn's master and every worker of it (nothing gets to clean up)."""
        children = _children(self.process.pid)
        self.process.kill()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def restart(self, **changes) -> "TbsProcess":
        """A new process on the same home and port (options changed by ``changes``)."""
        self.stop()
        options = {**self.options, **changes}
        again = start_tbs(self.home, self.chain_dir, name=self.name, port=self.port, **options)
        again.registry = self.registry
        if self.registry is not None:
            self.registry.append(again)
        return again

    def party(self):
        from milagro_tls.identity.party import Party
        return Party.load(self.home, self.name)

    def trust_entry(self, name: str | None = None) -> dict:
        """A trust entry pinning this TBS (role "tbs"), named ``name`` (default its identity name)."""
        return {**self.party().trust_entry(roles=["tbs"]), "name": name or self.name}

    def store(self, db: str | None = None):
        from milagro_tls.roles.store import open_store
        return open_store(db or self.options.get("db"), self.home)

    def milagro(self, *args: str) -> subprocess.CompletedProcess:
        """``milagro tbs ARGS... --home HOME`` (admin commands) on this TBS's home."""
        db = ("--db", self.options["db"]) if self.options.get("db") else ()
        return subprocess.run([sys.executable, "-m", "milagro_tls.cli", "tbs", *args, "--home", str(self.home), *db],
                              capture_output=True, text=True, timeout=120)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def start_tbs(home: Path, chain_dir: Path, *, name: str = "tbs", port: int = 0, workers: int = 1,
              db: str | None = None, period: int = 60, batch_wait: float = 8.0, gather: float = 0.5,
              max_batch: int = 128, min_confirmations: int = 1, lease: float = 60.0, admin_port: int | None = None,
              extra: tuple[str, ...] = ()) -> TbsProcess:
    home.mkdir(parents=True, exist_ok=True)
    options = {"workers": workers, "db": db, "period": period, "batch_wait": batch_wait, "gather": gather,
               "max_batch": max_batch, "min_confirmations": min_confirmations, "lease": lease,
               "admin_port": admin_port, "extra": extra}
    command = [sys.executable, "-m", "milagro_tls.cli", "tbs", "serve", "--home", str(home),
               "--chain", f"regtest://{chain_dir}", "--port", str(port), "--workers", str(workers),
               "--period", str(period), "--name", name, "--batch-wait", str(batch_wait), "--gather", str(gather),
               "--max-batch", str(max_batch), "--min-confirmations", str(min_confirmations), "--lease", str(lease),
               *extra]
    if db:
        command += ["--db", db]
    if admin_port is not None:
        command += ["--admin-port", str(admin_port)]
    log_path = home / "tbs-serve.log"
    process, announced = start_announcing(command, log_path, "milagro tbs serve", START_TIMEOUT)
    return TbsProcess(base_url=announced["base_url"], port=announced["listening"], ca_file=announced["ca_file"],
                      home=home, name=name, locator=announced["locator"], admin_port=announced.get("admin_port"),
                      chain_dir=chain_dir, options=options, process=process, log_path=log_path, announced=announced)


@pytest.fixture(scope="module")
def tbs_chain(world):
    """The world's chain on loopback for TBS subprocesses (one per module)."""
    from ..idp.served import ServedChain
    chain = ServedChain(world)
    yield chain
    chain.close()


@pytest.fixture(scope="module")
def tbs_server(tbs_chain, tmp_path_factory):
    """A factory: ``tbs_server(name="tbs", home=None, **options)`` starts ``milagro tbs serve``
    against the world's chain and returns a TbsProcess (.base_url, .port, .ca_file, .home,
    .name, .locator, .admin_port, .admin_url, .stop(), .kill(), .restart(), .log(), .party(),
    .trust_entry(), .store(), .milagro(...)). Options: workers, db, period, batch_wait (8 s),
    gather (0.5 s), max_batch, min_confirmations, lease, admin_port, extra. Every TBS started
    (and restarted through the factory's processes) is stopped at the end of the module."""
    started: list[TbsProcess] = []

    def start(name: str = "tbs", *, home: Path | None = None, **options) -> TbsProcess:
        home = home or tmp_path_factory.mktemp(f"tbs-{name}")
        process = start_tbs(home, tbs_chain.chain_dir, name=name, **options)
        process.registry = started
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def pats(world, tbs, tmp_path):
    """A factory of PAT clients of the module's ``tbs`` fixture: ``pats(n=1)`` returns n new
    ones (pat-0, pat-1, ...); all are closed at the end of the test."""
    from .patclient import PatClient
    made: list = []

    def make(n: int = 1) -> list:
        new = [PatClient(world, tbs, tmp_path / "pats", f"pat-{len(made) + i}") for i in range(n)]
        made.extend(new)
        return new

    yield make
    for pat in made:
        pat.close()

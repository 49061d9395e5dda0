"""Fixtures for the D-TA's tests.

``dta_unit``: the D-TA's Flask app over a SQLite store in tmp_path, a fake IdP behind
httpx.MockTransport (fakes.py) and a settable clock; requests carry a fake milagro-tls peer in
``environ["gunicorn.socket"]`` (``unit.as_party(locator)``).

``dta_server``: a factory that starts ``milagro dta serve`` (gunicorn) as a subprocess against
the world's chain, relying on an IdP started by ``idp_server`` (tests/roles/idp/served.py) or
any issuer given. Each call may name its own home, so one test can run two D-TAs with different
master secrets::

    def test_two(dta_server, idp_for_dta):
        a = dta_server("dta-a", idp=idp_for_dta)
        b = dta_server("dta-b", idp=idp_for_dta)
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.role_process import RoleProcess, start_announcing

from .fakes import fake_locator
from .rig import dta_rig

START_TIMEOUT = 180


@pytest.fixture
def dta_unit(tmp_path):
    rig = dta_rig(tmp_path)
    yield SimpleNamespace(**vars(rig), alice=fake_locator(1), bob=fake_locator(2))
    rig.close()


# --- the served D-TA -----------------------------------------------------------------------
@dataclass(kw_only=True)
class DtaProcess(RoleProcess):
    base_url: str
    port: int
    ca_file: str
    name: str
    locator: dict

    def party(self):
        from milagro_tls.identity.party import Party
        return Party.load(self.home, self.name)

    def trust_entry(self, name: str | None = None) -> dict:
        """A trust entry pinning this D-TA (role "dta"), named ``name`` (default its identity name)."""
        entry = self.party().trust_entry(roles=["dta"])
        return {**entry, "name": name or self.name}

    def milagro(self, *args: str) -> subprocess.CompletedProcess:
        """``milagro dta ARGS... --home HOME`` (service add, user revoke) on this D-TA's home."""
        return subprocess.run([sys.executable, "-m", "milagro_tls.cli", "dta", *args, "--home", str(self.home)],
                              capture_output=True, text=True, timeout=120)


def start_dta(home: Path, chain_dir: Path, idps: list[str], *, name: str = "dta", idp_trust: str | None = None,
              idp_ca: str | None = None, workers: int = 1, period: int = 60, extra: tuple[str, ...] = ()) -> DtaProcess:
    home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "milagro_tls.cli", "dta", "serve", "--home", str(home),
               "--chain", f"regtest://{chain_dir}", "--port", "0", "--workers", str(workers),
               "--period", str(period), "--name", name, *extra]
    for issuer in idps:
        command += ["--idp", issuer]
    if idp_trust:
        command += ["--idp-trust", idp_trust]
    if idp_ca:
        command += ["--idp-ca", idp_ca]
    log_path = home / "dta-serve.log"
    process, announced = start_announcing(command, log_path, "milagro dta serve", START_TIMEOUT)
    return DtaProcess(base_url=announced["base_url"], port=announced["listening"], ca_file=announced["ca_file"],
                      home=home, name=name, locator=announced["locator"], process=process, log_path=log_path,
                      announced=announced)


def idp_trust_file(idp, path: Path) -> Path:
    """A trust file pinning the served IdP (role "idp") under its issuer's host name."""
    from urllib.parse import urlsplit

    from milagro_tls.identity.party import Party
    entry = Party.load(idp.home, "idp").trust_entry(roles=["idp"])
    path.write_text(json.dumps([{**entry, "name": urlsplit(idp.issuer).hostname}]))
    return path


@pytest.fixture(scope="module")
def served_chain(world):
    """The world's chain on loopback for role subprocesses (one per module)."""
    from ..idp.served import ServedChain
    chain = ServedChain(world)
    yield chain
    chain.close()


@pytest.fixture(scope="module")
def idp_for_dta(served_chain, tmp_path_factory):
    """``milagro idp serve`` (one worker, open registration, alice / "correct horse") for D-TAs."""
    from ..idp.served import start_idp
    idp = start_idp(tmp_path_factory.mktemp("idp-for-dta"), served_chain.chain_dir)
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def dta_server(served_chain, tmp_path_factory):
    """A factory: ``dta_server(name, idp=IdPProcess | None, issuers=(), pinned=True, **options)``
    starts ``milagro dta serve`` in its own home (tmp dir named after ``name``) against the
    world's chain and returns a DtaProcess (.base_url, .port, .ca_file, .home, .name, .locator,
    .stop(), .log(), .party(), .trust_entry(), .milagro(...)). With ``idp`` the D-TA relies on
    that served IdP, pinned through a trust file (``pinned=False``: ordinary HTTPS with its
    CA file). ``issuers``/``idp_ca`` add IdPs reached over ordinary HTTPS (oidc-provider).
    Every D-TA started is stopped at the end of the module."""
    started: list[DtaProcess] = []

    def start(name: str = "dta", *, idp=None, issuers: tuple[str, ...] = (), pinned: bool = True,
              idp_ca: str | None = None, **options) -> DtaProcess:
        home = tmp_path_factory.mktemp(f"dta-{name}")
        idps = list(issuers)
        trust = None
        if idp is not None:
            idps.insert(0, idp.issuer)
            if pinned:
                trust = str(idp_trust_file(idp, home.parent / f"{home.name}-idp-trust.json"))
            else:
                idp_ca = idp_ca or idp.ca_file
        process = start_dta(home, served_chain.chain_dir, idps, name=name, idp_trust=trust, idp_ca=idp_ca, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()

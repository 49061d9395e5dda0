"""``milagro idp serve`` in a subprocess (gunicorn) against the world's chain: the
``idp_server`` fixture's machinery.

The world's node is open in this process (its directory is locked), so a ChainServer serves it
on loopback in a thread (over LockedNode: the node is not thread-safe) and the subprocess uses
``regtest://DIR``, which finds that server through DIR/server.json (roles.serving.chain_service
then starts none). The IdP creates its anchored identity on first start through that server
(faucet, anchor, mined blocks)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from milagro_tls.chain.server import ChainServer

from helpers.nodes import LockedNode
from helpers.role_process import RoleProcess, start_announcing

from .flows import PASSWORD

START_TIMEOUT = 120


@dataclass(kw_only=True)
class IdPProcess(RoleProcess):
    issuer: str
    port: int
    ca_file: str
    registration_token: str | None


def milagro(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milagro_tls.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def start_idp(home: Path, chain_dir: Path, *, registration_token: str | None = None, workers: int = 1,
              db: str | None = None, extra: tuple[str, ...] = ()) -> IdPProcess:
    home.mkdir(parents=True, exist_ok=True)
    db_args = ("--db", db) if db else ()
    added = milagro("idp", "user", "add", "--home", str(home), "alice", "--password", PASSWORD, *db_args)
    if added.returncode != 0 and "already exists" not in added.stderr:
        raise RuntimeError(f"milagro idp user add failed: {added.stderr}")
    command = [sys.executable, "-m", "milagro_tls.cli", "idp", "serve", "--home", str(home),
               "--chain", f"regtest://{chain_dir}", "--port", "0", "--workers", str(workers), *db_args, *extra]
    if registration_token:
        command += ["--registration-token", registration_token]
    log_path = home / "idp-serve.log"
    process, announced = start_announcing(command, log_path, "milagro idp serve", START_TIMEOUT)
    return IdPProcess(issuer=announced["issuer"], port=announced["listening"], ca_file=announced["ca_file"],
                      home=home, registration_token=registration_token, process=process, log_path=log_path,
                      announced=announced)


class ServedChain:
    """The world's chain on loopback for subprocesses; close() stops serving it."""

    def __init__(self, world) -> None:
        self.chain_dir = Path(world.source.node.datadir)
        self.server = ChainServer(LockedNode(world.source), self.chain_dir).start()

    def close(self) -> None:
        self.server.close()

"""The real ``milagro`` commands as child processes: a served regtest chain, anchored parties
on it, and ``milagro serve echo`` servers whose per-connection lines a test can wait for."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from milagro_tls.chain.spec import open_source
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party

from helpers.handshake import World

#: The console script of this venv, else the package's __main__ (the same entry point).
_SCRIPT = Path(sys.executable).with_name("milagro")
MILAGRO = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "milagro_tls.cli"]


def milagro(*argv, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one ``milagro`` command to completion."""
    done = subprocess.run([*MILAGRO, *map(str, argv)], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"milagro {' '.join(map(str, argv))} exited {done.returncode}: {done.stderr}")
    return done


class Running:
    """A long-running ``milagro`` command. Its stdout lines are collected by a thread so that a
    test can wait for one; stderr goes to a file (never a pipe nobody reads: it would fill)."""

    def __init__(self, *argv, log_dir: Path, name: str) -> None:
        self.stderr_path = Path(log_dir) / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([*MILAGRO, *map(str, argv)], stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, bufsize=1)
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0, since: int = 0) -> str:
        """The first stdout line (from index ``since``) for which ``predicate(line)`` holds,
        waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines[since:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no matching line within {timeout} s; exit {self.proc.poll()}; "
                                         f"stdout {self.lines}; stderr {self.stderr()}")
                self._new.wait(remaining)

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._reader.join(5)
            self.proc.stdout.close()
            self._stderr.close()


class ServedChain:
    """``milagro chain init`` then ``milagro chain serve`` on ``directory``: other processes
    (``regtest://DIR``) and this one reach the chain through the server."""

    def __init__(self, directory: Path, log_dir: Path) -> None:
        self.directory = directory
        milagro("chain", "init", "--chain-dir", directory)
        self.server = Running("chain", "serve", "--chain-dir", directory, log_dir=log_dir, name="chain-serve")
        self.info = json.loads(self.server.wait_for(lambda line: line.startswith("{")))
        self.spec = f"regtest://{directory}"

    def close(self) -> None:
        assert self.server.stop() == 0, self.server.stderr()


def served_world(chain: ServedChain, home: Path, names_and_roles) -> World:
    """The shared test world (helpers.handshake.World) on a served chain: the same parties,
    anchored through the chain server, so that child processes can load them from ``home``."""
    source = open_source(chain.spec)
    parties = {name: Party.create(home, source, role=role, name=name) for name, role in names_and_roles}
    identities = {name: LocalIdentity.from_party(p, source) for name, p in parties.items()}
    return World(source, home, parties, identities)


def write_trust_file(path: Path, home: Path, *names: str) -> Path:
    """A trust file as a user makes one: the JSON list of ``identity show --trust-entry`` outputs."""
    entries = [json.loads(milagro("identity", "show", name, "--home", home, "--trust-entry").stdout)
               for name in names]
    path.write_text(json.dumps(entries, indent=2))
    return path


class EchoProcess(Running):
    """``milagro serve echo`` with ``argv`` on port 0; ``address`` once it says where it listens."""

    def __init__(self, chain: ServedChain, home: Path, *argv, log_dir: Path, name: str = "serve-echo") -> None:
        super().__init__("serve", "echo", "--home", home, "--chain", chain.spec, "--port", 0, *argv,
                         log_dir=log_dir, name=name)
        line = self.wait_for(lambda line: line.startswith("listening on "))
        host, _, port = line.removeprefix("listening on ").rpartition(":")
        self.address = (host, int(port))

    def mark(self) -> int:
        """Where the lines of connections made from now on start (a client port may repeat)."""
        with self._new:
            return len(self.lines)

    def line_for(self, client_port: int, since: int = 0, timeout: float = 10.0) -> str:
        """What the server printed for the connection from our local ``client_port``."""
        prefix = f"{self.address[0]}:{client_port} "
        return self.wait_for(lambda line: line.startswith(prefix), timeout, since).removeprefix(prefix)

"""Run client.mjs (panva's openid-client under node) and talk to it in JSON lines."""
from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent
SCRIPT = NODE_DIR / "client.mjs"


class NodeClientError(AssertionError):
    """client.mjs said something other than what the test expected (or died)."""


def npm_ci(directory: Path) -> None:
    """``npm ci`` in ``directory`` when its node_modules is missing or older than its lock file.

    ``npm ci`` installs exactly the committed package-lock.json from the npm registry; it is the
    only step that reaches the network, and it runs at test-setup time. Under a file lock: two
    test processes (pytest-xdist workers) must not install into one node_modules at once.
    """
    lockfile = directory / "package-lock.json"
    installed = directory / "node_modules" / ".package-lock.json"

    def current() -> bool:
        return installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime
    if current():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (Debian package npm)")
    with open(directory / ".npm-ci.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not current():                   # another process may have installed it meanwhile
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=directory, check=True, timeout=600,
                           stdout=subprocess.DEVNULL)


def ensure_installed() -> None:
    """panva's openid-client in interop/oidc (``make test`` runs this through the session
    fixture; ahead: ``npm ci --prefix interop/oidc``)."""
    npm_ci(NODE_DIR)


class NodeRun:
    """One ``node client.mjs MODE CONFIG`` process trusting ``ca_file`` as its extra CA."""

    def __init__(self, mode: str, config: dict, ca_file: str | os.PathLike) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODE_")}
        # The IdP's self-signed fallback certificate is the one CA node trusts beyond its own.
        env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
        self.process = subprocess.Popen(
            ["node", str(SCRIPT), mode, json.dumps(config)], cwd=NODE_DIR, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read()

    def next(self, timeout: float = 60) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise NodeClientError(f"client.mjs said nothing for {timeout}s after {self.seen}") from None
        if line is None:
            self.process.wait(timeout=10)
            raise NodeClientError(f"client.mjs exited ({self.process.returncode}) after {self.seen}; "
                                  f"stderr: {self._stderr()}")
        message = json.loads(line)
        self.seen.append(message)
        return message

    def expect(self, step: str, timeout: float = 60) -> dict:
        message = self.next(timeout)
        if message["step"] != step:
            raise NodeClientError(f"expected step {step!r}, got {message}; stderr: {self._stderr()}")
        return message

    def send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()

    def __enter__(self) -> "NodeRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""A role served by gunicorn in a subprocess, for tests: start it from an app module and a
runner script, read its listening line, always stop it."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


class Running:
    def __init__(self, process: subprocess.Popen, line: dict, log: Path) -> None:
        self.process, self.line, self.log = process, line, log

    @property
    def port(self) -> int:
        return self.line["listening"]


@contextlib.contextmanager
def run_role(tmp_path: Path, settings: dict, app: str, runner: str):
    """Write ``app`` as app.py and ``runner`` as runner.py in tmp_path and run the runner with
    ROLE_TEST=settings (plus a markers directory); yields a Running once it printed its line."""
    (tmp_path / "app.py").write_text(app)
    (tmp_path / "runner.py").write_text(runner)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "ROLE_TEST": json.dumps({**settings, "markers": str(markers)}),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, str(tmp_path / "runner.py")], env=env, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=stderr)
    try:
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        assert lines and lines[0], log.read_text()
        yield Running(process, json.loads(lines[0]), log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def standard_get(cafile: Path, port: int) -> dict:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    return json.loads(body)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def start_announcing(command: list[str], log_path: Path, what: str, timeout: float = 120.0):
    """Start a role's ``serve`` command (stderr to ``log_path``) and read the one JSON line it
    prints once it listens; returns (process, that line). A role that does not start is killed and
    the test fails with the end of its log."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env={**os.environ})
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line or not line[0]:
        process.kill()
        process.wait()
        raise RuntimeError(f"{what} did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
    return process, json.loads(line[0])


@dataclass(kw_only=True)
class RoleProcess:
    """A role's ``serve`` command started by start_announcing: its process, its log (stderr),
    its home and the JSON line it announced."""
    process: subprocess.Popen
    log_path: Path
    home: Path
    announced: dict = field(default_factory=dict)

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), SIGKILL after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

"""The demo's child processes: ``milagro ...`` servers that announce themselves with one JSON
line on stdout, and one-shot ``milagro ...`` commands.

Every server started goes into a ``Processes`` group, which stops them all (SIGTERM to the
process group, then SIGKILL) in reverse order of start, whatever happened: a demo that fails
leaves nothing running. Each child runs in its own session (process group) so that gunicorn's
workers and a role's own chain-server child are stopped with it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MilagroError

#: A role's first start anchors its identity (faucet, anchor, 6 mined blocks): give it time.
START_TIMEOUT = 180.0
COMMAND_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0


class DemoError(MilagroError):
    """A step of the demo failed; the message says which and why (with the log's tail)."""


def milagro_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "milagro_tls.cli", *map(str, args)]


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return "(no log)"


@dataclass
class Child:
    """A server child: what it announced, where its log is."""
    label: str
    process: subprocess.Popen
    log_path: Path
    announced: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to its process group (gunicorn stops its workers gracefully), SIGKILL after
        ``timeout``."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Stragglers of the group (a worker that outlived its master) go too.
        _signal_group(self.process.pid, signal.SIGKILL)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def log(self) -> str:
        return _tail(self.log_path)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class Processes:
    """The servers this demo started; ``stop_all()`` (or leaving the ``with``) stops every one."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []
        self._lock = threading.Lock()

    def start(self, label: str, argv: list[str], *, timeout: float = START_TIMEOUT, stdin: bool = False,
              env: dict | None = None) -> Child:
        """Start ``argv`` and wait for its first stdout line (JSON); DemoError with its log if it
        exits or stays silent."""
        log_path = self.logs / f"{label}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                       stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, **(env or {})})
        child = Child(label, process, log_path)
        with self._lock:
            self.children.append(child)
        line = read_line(process, timeout)
        if not line:
            child.stop()
            state = f"exited with {process.returncode}" if process.returncode is not None else \
                f"said nothing within {timeout:.0f} s"
            raise DemoError(f"{label} did not start ({state}); its log {log_path}:\n{child.log()}")
        try:
            child.announced = json.loads(line)
        except ValueError:
            child.stop()
            raise DemoError(f"{label} announced something that is not JSON: {line[:200]!r}") from None
        return child

    def stop_all(self) -> None:
        with self._lock:
            children, self.children = list(reversed(self.children)), []
        interrupted = None
        for child in children:
            try:
                child.stop()
            except BaseException as exc:         # a second Ctrl-C: the rest are killed, not left running
                interrupted = interrupted or exc
                _signal_group(child.pid, signal.SIGKILL)
        if interrupted is not None:
            raise interrupted

    def check_alive(self) -> None:
        """DemoError naming the first server that died."""
        for child in list(self.children):
            if not child.alive():
                raise DemoError(f"{child.label} (pid {child.pid}) exited with {child.process.returncode}; "
                                f"its log {child.log_path}:\n{child.log()}")

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """The next stdout line of ``process`` within ``timeout`` seconds ('' on EOF or silence)."""
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0].decode(errors="replace").strip() if line else ""


def run(label: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> dict | list | None:
    """``milagro ARGS...`` to completion; its stdout's last line parsed as JSON (None if empty).
    DemoError with its stderr when it fails."""
    try:
        done = subprocess.run(milagro_argv(*args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DemoError(f"{label}: `milagro {' '.join(args[:3])} ...` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise DemoError(f"{label}: `milagro {' '.join(args[:3])} ...` exited {done.returncode}:\n"
                        f"{done.stderr.strip()[-3000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return None

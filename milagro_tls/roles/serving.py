"""Serve a role's WSGI app as users deploy it: gunicorn, several workers, the milagro-tls Context.

    with chain_service(args.chain):                         # regtest://DIR: make sure a server owns DIR
        source = open_source(args.chain)
        party = home.ensure_identity(source, ...)
        certfile, keyfile = home.fallback_certificate(args.cert, args.key)
        context = Context(identity=party, chain=args.chain, ...)     # built here, in the master
        serve(ServeConfig(app="milagro_tls.roles.idp.app:create_app", app_kwargs={...},
                          port=args.port, workers=2, certfile=certfile, keyfile=keyfile), context)

What gunicorn gets, and why:

* ``certfile``/``keyfile`` always: gunicorn calls the ``ssl_context`` hook only when a
  certificate is configured; the hook returns the Context (``gunicorn_ssl_context()``), which
  serves that certificate to standard clients itself (its X.509 fallback).
* The Context is built in the master before the fork; each worker restarts its header sync on
  its own source connection (headersync.py, Context's ``source_factory``).
* The app is NOT preloaded: each worker imports the factory from its import string and calls
  it after the fork, so database pools, threads and per-worker background jobs (closing
  activity-log periods) are the worker's own. An app with a ``milagro_shutdown()`` attribute
  has it called when its worker exits.
* SIGTERM stops gracefully (gunicorn's own handling: workers finish their requests within
  ``graceful_timeout``). ``serve`` returns only by SystemExit, from gunicorn.
* Once the socket listens, one JSON line goes to stdout, ``{"listening": PORT, "pid": ...,
  "url": "https://HOST:PORT", ...announce}``, for tests, the demo and scripts (port 0 picks a
  free port). gunicorn's own log goes to stderr.

Several processes and one regtest directory: only one process can open a regtest chain
directory (it is locked), and gunicorn workers are separate processes. So a role never lets
its workers open the directory: ``chain_service(spec)`` finds the directory's running chain
server (DIR/server.json), or starts ``milagro chain serve`` for it as a child process and stops
it when the role stops (it dies with the role even on SIGKILL, through PR_SET_PDEATHSIG).
When several roles share one regtest directory, start ``milagro chain serve`` yourself
first (the demo does): a server a role started ends with that role.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from ..chain.spec import server_info
from ..errors import MilagroError

log = logging.getLogger(__name__)

CHAIN_SERVER_START_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1


class ServingError(MilagroError):
    """The role cannot be served (its chain server did not start, a bad app import string)."""


@dataclass
class ServeConfig:
    app: str                                   # "package.module:factory"; factory(**app_kwargs) -> WSGI app
    app_kwargs: dict[str, Any] = field(default_factory=dict)
    certfile: str | os.PathLike = ""
    keyfile: str | os.PathLike = ""
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 1
    threads: int = 4
    graceful_timeout: float = 10.0
    timeout: float = 60.0                      # a worker silent this long is restarted
    keepalive: float = 5.0
    loglevel: str = "info"
    announce: dict[str, Any] = field(default_factory=dict)    # extra fields of the listening line
    gunicorn: dict[str, Any] = field(default_factory=dict)    # any further gunicorn settings


def load_app(import_string: str, kwargs: dict[str, Any]):
    """Import ``module:factory`` and call ``factory(**kwargs)``: a WSGI app."""
    module_name, sep, attribute = import_string.partition(":")
    if not sep or not module_name or not attribute:
        raise ServingError(f"app import string {import_string!r} is not 'module:factory'")
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(factory):
        raise ServingError(f"{import_string!r} is not a callable app factory")
    return factory(**kwargs)


def _listening_line(server, config: ServeConfig) -> dict[str, Any]:
    port = server.LISTENERS[0].sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    return {"listening": port, "pid": os.getpid(), "url": f"https://{host}:{port}", "workers": config.workers,
            **config.announce}


class RoleApplication(BaseApplication):
    """gunicorn's embedding API, configured from a ServeConfig and one Context."""

    def __init__(self, config: ServeConfig, context) -> None:
        if not config.certfile or not config.keyfile:
            raise ServingError("a certfile and keyfile are required: gunicorn calls the ssl_context hook only then "
                               "(RoleHome.fallback_certificate makes one)")
        self.config = config
        self.context = context
        super().__init__()

    def load_config(self) -> None:
        config = self.config
        host = f"[{config.host}]" if ":" in config.host else config.host

        def when_ready(server) -> None:
            print(json.dumps(_listening_line(server, config)), flush=True)

        def worker_exit(server, worker) -> None:
            shutdown = getattr(getattr(worker, "wsgi", None), "milagro_shutdown", None)
            if callable(shutdown):
                shutdown()

        settings = {
            "bind": [f"{host}:{config.port}"], "workers": config.workers, "worker_class": "gthread",
            "threads": config.threads, "certfile": str(config.certfile), "keyfile": str(config.keyfile),
            "ssl_context": self.context.gunicorn_ssl_context(), "preload_app": False,
            # gunicorn's validators take whole seconds (an int, or a str for int(x, 0)).
            "graceful_timeout": round(config.graceful_timeout), "timeout": round(config.timeout),
            "keepalive": round(config.keepalive),
            "loglevel": config.loglevel, "errorlog": "-", "accesslog": None, "when_ready": when_ready,
            "worker_exit": worker_exit, "proc_name": config.app.partition(":")[0],
            **config.gunicorn,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return load_app(self.config.app, self.config.app_kwargs)


def serve(config: ServeConfig, context) -> None:
    """Run gunicorn in this process until it is told to stop (SIGTERM: graceful)."""
    RoleApplication(config, context).run()


# --- the chain server a regtest directory needs ------------------------------------------
# Loaded here, not in the forked child: dlopen after a fork in a threaded process can deadlock.
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    """In the chain server's child, before exec: SIGTERM when the role's process dies, even
    by SIGKILL, so no chain server outlives its role and keeps the directory locked."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def regtest_dir(spec: str) -> Path | None:
    return Path(spec.partition("://")[2]) if spec.startswith("regtest://") else None


class ChainServerProcess:
    """``milagro chain serve`` for one directory, run as this process's child."""

    def __init__(self, datadir: Path, *, timeout: float = CHAIN_SERVER_START_TIMEOUT) -> None:
        self.datadir = datadir
        command = [sys.executable, "-m", "milagro_tls.cli", "chain", "serve", "--chain-dir", str(datadir)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        preexec_fn=_die_with_parent if _prctl is not None else None)
        self.info = self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> dict:
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            self.stop()
            error = self.process.stderr.read().decode(errors="replace")[-2000:]
            raise ServingError(f"`milagro chain serve` for {self.datadir} did not start: {error.strip()}")
        return json.loads(line[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            except ChildProcessError:        # reaped by gunicorn's arbiter (waitpid(-1)) already
                pass
        for stream in (self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def chain_service(spec: str, *, timeout: float = CHAIN_SERVER_START_TIMEOUT) -> Iterator[dict | None]:
    """For ``regtest://DIR``: yields the info of the chain server that owns DIR, started here
    (and stopped on exit) if none runs. Other specs (bitcoind, Esplora) are servers already:
    yields None. Open sources from ``spec`` only inside this block."""
    datadir = regtest_dir(spec)
    if datadir is None:
        yield None
        return
    info = server_info(datadir)
    if info is not None:
        yield info
        return
    if not datadir.is_dir():
        raise ServingError(f"no regtest chain at {datadir} (create it with `milagro chain init --chain-dir {datadir}`)")
    try:
        started = ChainServerProcess(datadir, timeout=timeout)
    except ServingError:
        # Another role may have started one at the same moment (its server holds the lock).
        deadline = time.monotonic() + 5
        while (info := server_info(datadir)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if info is None:
            raise
        yield info
        return
    log.info("started a chain server for %s on port %s (pid %d)", datadir, started.info.get("port"),
             started.process.pid)
    try:
        yield started.info
    finally:
        started.stop()


def free_port(host: str) -> int:
    """A free TCP port on ``host``: a role whose URL names its port (an issuer) needs it before
    gunicorn binds."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_role(*, chain: str, prepare: Callable[[Any], tuple[Any, Any]], app: str, app_kwargs: dict[str, Any],
               host: str, port: int, workers: int, cert: str | None, key: str | None,
               context_options: dict[str, Any] | None = None,
               announce: Callable[[Any, Path], dict[str, Any]] | None = None,
               before_serve: Callable[[Any], None] | None = None,
               gunicorn: dict[str, Any] | None = None) -> int:
    """What every role's ``serve`` command does in gunicorn's master: reach the chain (starting the
    regtest directory's chain server when none runs), ``prepare(source) -> (RoleHome, Party)`` (the
    identity on first start, schema, keys), the fallback certificate, the role's Context, then
    gunicorn with ``app`` built in each worker. ``before_serve(context)`` runs with the Context open
    (a service fetching its server secret); ``announce(party, certfile)`` adds to the listening line;
    ``gunicorn`` passes further settings (a second ``bind`` for an admin port)."""
    from ..chain.spec import open_source
    from ..context import Context

    with chain_service(chain):
        source = open_source(chain)
        try:
            home, party = prepare(source)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        certfile, keyfile = home.fallback_certificate(cert, key)
        context = Context(identity=party, chain=chain, fallback_certificate=(str(certfile), str(keyfile)),
                          **(context_options or {}))
        with context:
            if before_serve is not None:
                before_serve(context)
            serve(ServeConfig(app=app, app_kwargs=app_kwargs, host=host, port=port, workers=workers,
                              certfile=certfile, keyfile=keyfile,
                              announce=announce(party, certfile) if announce else {},
                              gunicorn=gunicorn or {}), context)
    return 0

"""Chain source specs: the one string a user gives to say where the chain is.

    regtest://DIR                      the regtest chain in DIR: through its chain server when
                                       one runs (DIR/server.json), else the directory itself
    bitcoind://USER:PASS@HOST:PORT     a bitcoind-compatible JSON-RPC server
    bitcoind://HOST:PORT?cookie=PATH   the same, credentials from a cookie file

esplora+https:// comes with the chain-sources work.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import DataDirLocked, SourceError
from .source import ChainSource

SUPPORTED = ("regtest://DIR", "bitcoind://USER:PASS@HOST:PORT", "bitcoind://HOST:PORT?cookie=PATH")
SERVER_FILE = "server.json"          # kept equal to server.SERVER_FILE (not imported: no HTTP stack needed here)
COOKIE_FILE = ".cookie"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # alive, someone else's
        return True
    return True


def server_info(datadir: str | Path) -> dict | None:
    """DIR/server.json if it names a live process, else None (a crashed server leaves a stale file)."""
    try:
        info = json.loads(Path(datadir, SERVER_FILE).read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (0 < pid and 0 < port < 65536) or not _pid_alive(pid):
        return None
    return info


def find_server(datadir: str | Path, timeout: float = 10.0):
    """An RpcSource to the server that owns ``datadir``, if one runs and answers; else None."""
    from .network import Network
    from .rpc_client import RpcSource
    info = server_info(datadir)
    if info is None:
        return None
    host = info.get("host", "127.0.0.1")
    url = info.get("rpc_url") or f"http://{host}:{info['port']}/"
    try:
        source = RpcSource(url, cookie_file=Path(datadir, COOKIE_FILE), timeout=timeout)
    except SourceError:              # no cookie: the server is gone or not ready
        return None
    try:
        if source.network is not Network.REGTEST:
            raise SourceError("not a regtest server")
    except SourceError:              # the port does not answer, refuses the cookie, or is something else
        source.close()
        return None
    return source


def open_regtest(datadir: str | Path, wait: float = 10.0) -> ChainSource:
    """The server's RpcSource if a server owns ``datadir``, else an EmbeddedSource on it.

    A lock held without a server (another command working on the directory, or a
    server still starting) is waited out for up to ``wait`` seconds.
    """
    from .embedded import EmbeddedSource
    deadline = time.monotonic() + wait
    while True:
        server = find_server(datadir)
        if server is not None:
            return server
        try:
            return EmbeddedSource.open(datadir)
        except DataDirLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _bitcoind(spec: str) -> ChainSource:
    from .rpc_client import RpcSource
    parts = urlsplit(spec)
    if not parts.hostname or not parts.port:
        raise ValueError(f"bitcoind spec needs HOST:PORT: {spec!r}")
    cookie = parse_qs(parts.query).get("cookie", [None])[0]
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    elif cookie is None:
        raise ValueError(f"bitcoind spec needs USER:PASS@ or ?cookie=PATH: {spec!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return RpcSource(f"http://{host}:{parts.port}/", auth, cookie_file=cookie)


def open_source(spec: str) -> ChainSource:
    """Open the chain source a spec names (see the module doc); ValueError for anything else."""
    if not isinstance(spec, str):
        raise ValueError("a chain source spec is a string")
    scheme, sep, rest = spec.partition("://")
    if sep and scheme == "regtest":
        if not rest:
            raise ValueError("regtest:// needs a directory: regtest://DIR")
        return open_regtest(rest)
    if sep and scheme == "bitcoind":
        return _bitcoind(spec)
    raise ValueError(f"unsupported chain source {spec!r}; supported: {', '.join(SUPPORTED)} "
                     "(esplora+https:// is not implemented yet)")

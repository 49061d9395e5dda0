"""Chain source specs: the one string a user gives to say where the chain is.

    regtest://DIR                      the regtest chain in DIR: through its chain server when
                                       one runs (DIR/server.json), else the directory itself
    bitcoind://USER:PASS@HOST:PORT     a bitcoind-compatible JSON-RPC server
    bitcoind://HOST:PORT?cookie=PATH   the same, credentials from a cookie file
    bitcoind://HOST:PORT?datadir=DIR   the cookie bitcoind writes in DIR: DIR/.cookie for mainnet,
                                       DIR/<testnet3|testnet4|signet|regtest>/.cookie otherwise,
                                       the network taken from ``chain=`` or Core's default port
    esplora+https://HOST/PATH          an Esplora REST API (``https://blockstream.info/api``)
    esplora+http://HOST/PATH           the same over plain HTTP: for loopback and tests (our chain
                                       server's REST), not for a server across a network
    tbs://HOST:PORT                    a TBS's chain endpoints (chain.tbs_source): headers and
                                       proofs for a thin client, over HTTPS without certificate
                                       verification (headers prove themselves by proof of work)

``?network=mainnet|testnet3|testnet4|signet|regtest`` (Esplora, tbs) and ``?chain=`` (bitcoind)
name the network expected; the source checks it against the server (Esplora's genesis
block, bitcoind's getblockchaininfo) on first use. Without it the server's answer is taken.

``open_source`` gives a ChainSource; ``open_async_source`` an AsyncChainSource (bitcoind,
Esplora, or a regtest directory's running chain server) with its network resolved.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import DataDirLocked, SourceError
from .network import Network
from .source import ChainSource

SUPPORTED = ("regtest://DIR", "bitcoind://USER:PASS@HOST:PORT", "bitcoind://HOST:PORT?cookie=PATH",
             "bitcoind://HOST:PORT?datadir=DIR", "esplora+https://HOST/PATH", "esplora+http://HOST/PATH", "tbs://HOST:PORT")
SERVER_FILE = "server.json"          # kept equal to server.SERVER_FILE (not imported: no HTTP stack needed here)
COOKIE_FILE = ".cookie"
#: Where bitcoind keeps each network's files under its datadir (Core's chainparamsbase.cpp),
#: and the RPC port it listens on by default.
_CORE_SUBDIR = {Network.MAINNET: "", Network.TESTNET3: "testnet3", Network.TESTNET4: "testnet4",
                Network.SIGNET: "signet", Network.REGTEST: "regtest"}
_CORE_RPC_PORT = {8332: Network.MAINNET, 18332: Network.TESTNET3, 48332: Network.TESTNET4,
                  38332: Network.SIGNET, 18443: Network.REGTEST}


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


def _server_url(info: dict) -> str:
    return info.get("rpc_url") or f"http://{info.get('host', '127.0.0.1')}:{info['port']}/"


def find_server(datadir: str | Path, timeout: float = 10.0):
    """An RpcSource to the server that owns ``datadir``, if one runs and answers; else None."""
    from .rpc_client import RpcSource
    from .transport import NO_RETRY, RetryPolicy
    info = server_info(datadir)
    if info is None:
        return None
    try:
        # One try: a port that does not answer means "no server", and the caller falls back at once.
        source = RpcSource(_server_url(info), cookie_file=Path(datadir, COOKIE_FILE), timeout=timeout, retry=NO_RETRY)
    except SourceError:              # no cookie: the server is gone or not ready
        return None
    try:
        if source.network is not Network.REGTEST:
            raise SourceError("not a regtest server")
    except SourceError:              # the port does not answer, refuses the cookie, or is something else
        source.close()
        return None
    source.retry = RetryPolicy()
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


def _network_param(query: dict, key: str, spec: str) -> Network | None:
    value = query.get(key, [None])[0]
    if value is None:
        return None
    for parse in (Network.from_label, Network.from_core_chain):     # "testnet3" or Core's "test"
        try:
            return parse(value)
        except ValueError:
            pass
    raise ValueError(f"unknown network {value!r} in {spec!r}; one of {', '.join(n.label for n in Network)}")


def _query(parts, allowed: set[str], spec: str) -> dict:
    query = parse_qs(parts.query)
    unknown = set(query) - allowed
    if unknown:                       # a misspelt option must not be silently ignored
        raise ValueError(f"unknown option {sorted(unknown)[0]!r} in {spec!r}; allowed: {', '.join(sorted(allowed))}")
    return query


def datadir_cookie(datadir: str | Path, network: Network | None, port: int | None = None) -> Path:
    """The cookie bitcoind writes for ``network`` under ``datadir``. Without a network, Core's
    default RPC port names it; failing that, the only network directory holding a cookie."""
    if network is None:               # (not ``or``: MAINNET is 0)
        network = _CORE_RPC_PORT.get(port)
    if network is not None:
        return Path(datadir, _CORE_SUBDIR[network], COOKIE_FILE)
    found = [Path(datadir, sub, COOKIE_FILE) for sub in _CORE_SUBDIR.values()
             if Path(datadir, sub, COOKIE_FILE).is_file()]
    if len(found) != 1:
        raise ValueError(f"cannot tell which network's cookie to use in {datadir} "
                         f"({len(found)} found): add chain=main|test|testnet4|signet|regtest")
    return found[0]


def _bitcoind_args(spec: str) -> dict:
    parts = urlsplit(spec)
    if not parts.hostname or not parts.port:
        raise ValueError(f"bitcoind spec needs HOST:PORT: {spec!r}")
    query = _query(parts, {"cookie", "datadir", "chain"}, spec)
    network = _network_param(query, "chain", spec)
    cookie = query.get("cookie", [None])[0]
    if cookie is None and "datadir" in query:
        cookie = datadir_cookie(query["datadir"][0], network, parts.port)
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    elif cookie is None:
        raise ValueError(f"bitcoind spec needs USER:PASS@, ?cookie=PATH or ?datadir=DIR: {spec!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {"url": f"http://{host}:{parts.port}/", "auth": auth, "cookie_file": cookie, "network": network}


def _esplora_args(spec: str) -> dict:
    parts = urlsplit(spec.removeprefix("esplora+"))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"Esplora spec is esplora+https://HOST/PATH: {spec!r}")
    query = _query(parts, {"network"}, spec)
    return {"base_url": f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/"),
            "network": _network_param(query, "network", spec)}


def _tbs_args(spec: str) -> dict:
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port or parts.path not in ("", "/") or parts.username is not None:
        raise ValueError(f"TBS spec is tbs://HOST:PORT: {spec!r}")
    query = _query(parts, {"network"}, spec)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {"base_url": f"https://{host}:{port}", "network": _network_param(query, "network", spec)}


def _scheme(spec) -> str:
    if not isinstance(spec, str):
        raise ValueError("a chain source spec is a string")
    scheme, sep, rest = spec.partition("://")
    if not sep or scheme not in ("regtest", "bitcoind", "esplora+https", "esplora+http", "tbs"):
        raise ValueError(f"unsupported chain source {spec!r}; supported: {', '.join(SUPPORTED)}")
    if scheme == "regtest" and not rest:
        raise ValueError("regtest:// needs a directory: regtest://DIR")
    return scheme


def open_source(spec: str) -> ChainSource:
    """Open the chain source a spec names (see the module doc); ValueError for anything else."""
    scheme = _scheme(spec)
    if scheme == "regtest":
        return open_regtest(spec.partition("://")[2])
    if scheme == "bitcoind":
        from .rpc_client import RpcSource
        args = _bitcoind_args(spec)
        return RpcSource(args.pop("url"), args.pop("auth"), **args)
    if scheme == "tbs":
        from .tbs_source import TbsSource
        args = _tbs_args(spec)
        return TbsSource(args.pop("base_url"), **args)
    from .esplora import EsploraSource
    args = _esplora_args(spec)
    return EsploraSource(args.pop("base_url"), **args)


async def open_async_source(spec: str):
    """The AsyncChainSource a spec names, its network resolved (SourceError if the server
    cannot be asked or serves another network than the spec says). A regtest directory has
    an async form only through its running chain server (``milagro chain serve DIR``)."""
    scheme = _scheme(spec)
    if scheme == "tbs":
        raise ValueError("tbs:// has no async form: a thin client uses the blocking TbsSource")
    if scheme == "regtest":
        from .rpc_client import AsyncRpcSource
        datadir = spec.partition("://")[2]
        info = server_info(datadir)
        if info is None:
            raise ValueError(f"regtest://{datadir}: no chain server runs there; the embedded node has no "
                             "async form (start one with `milagro chain serve`)")
        source = AsyncRpcSource(_server_url(info), cookie_file=Path(datadir, COOKIE_FILE), network=Network.REGTEST)
    elif scheme == "bitcoind":
        from .rpc_client import AsyncRpcSource
        args = _bitcoind_args(spec)
        source = AsyncRpcSource(args.pop("url"), args.pop("auth"), **args)
    else:
        from .esplora import AsyncEsploraSource
        args = _esplora_args(spec)
        source = AsyncEsploraSource(args.pop("base_url"), **args)
    try:
        await source.resolve_network()
    except BaseException:
        await source.aclose()
        raise
    return source

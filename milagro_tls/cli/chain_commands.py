"""``milagro chain init|mine|serve|info``: the embedded regtest chain from the command line.

Only one process can own a chain directory. While ``chain serve`` runs, the other
commands go through its JSON-RPC (``spec.open_regtest`` finds it via server.json);
otherwise they open the directory themselves. Every command prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..chain.hashes import to_display_hex

#: Blocks ``init`` mines: 100 to mature the first coinbase, and a few to spare, so the faucet can pay.
INIT_HEIGHT = 110


def _add_dir(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("MILAGRO_CHAIN_DIR")
    parser.add_argument("--chain-dir", type=Path, default=default, required=default is None,
                        help="the regtest chain's data directory (default: $MILAGRO_CHAIN_DIR)")


def register(sub: argparse._SubParsersAction) -> None:
    chain = sub.add_parser("chain", help="the embedded regtest chain").add_subparsers(dest="action", required=True)

    init = chain.add_parser("init", help=f"create the chain directory and mine to height {INIT_HEIGHT}")
    _add_dir(init)
    init.set_defaults(func=_init)

    mine = chain.add_parser("mine", help="mine N blocks (the mempool goes into the first)")
    mine.add_argument("n", type=int)
    mine.add_argument("--address", help="pay the coinbases to this regtest address (default: the node's miner key)")
    _add_dir(mine)
    mine.set_defaults(func=_mine)

    serve = chain.add_parser("serve", help="serve the chain: bitcoind JSON-RPC + Esplora REST on loopback")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "::1", "localhost"))
    serve.add_argument("--verbose", action="store_true", help="log requests and errors to stderr")
    _add_dir(serve)
    serve.set_defaults(func=_serve)

    info = chain.add_parser("info", help="tip, mempool size, and whether a server owns the directory")
    _add_dir(info)
    info.set_defaults(func=_info)

    from .headers_commands import add_to
    add_to(chain)


def _print(obj) -> None:
    print(json.dumps(obj), flush=True)


def _open(chain_dir: Path):
    from ..chain.spec import open_regtest
    return open_regtest(chain_dir)


def _via(source) -> str:
    from ..chain.rpc_client import RpcSource
    return "server" if isinstance(source, RpcSource) else "directory"


def _init(args) -> int:
    args.chain_dir.mkdir(parents=True, exist_ok=True)
    with _open(args.chain_dir) as source:
        height = source.tip().height
        if height < INIT_HEIGHT:
            source.mine(INIT_HEIGHT - height)
        tip = source.tip()
        _print({"chain_dir": str(args.chain_dir), "height": tip.height,
                "tip": to_display_hex(tip.block_hash), "via": _via(source)})
    return 0


def _mine(args) -> int:
    if args.n < 0:
        raise SystemExit("milagro chain mine: N must not be negative")
    script = None
    if args.address:
        from ..chain.network import Network
        from ..chain.script_text import address_to_script
        try:
            script = address_to_script(args.address, Network.REGTEST)
        except ValueError as exc:
            raise SystemExit(f"milagro chain mine: {exc}") from None
    with _open(args.chain_dir) as source:
        hashes = source.mine(args.n, script)
        tip = source.tip()
        _print({"height": tip.height, "tip": to_display_hex(tip.block_hash),
                "mined": [to_display_hex(h) for h in hashes], "via": _via(source)})
    return 0


def _serve(args) -> int:
    from ..chain.server import serve_until_signalled, stderr_log
    args.chain_dir.mkdir(parents=True, exist_ok=True)

    def ready(info: dict) -> None:
        _print({**info, "chain_dir": str(args.chain_dir)})

    serve_until_signalled(args.chain_dir, args.host, args.port, ready=ready,
                          log=stderr_log if args.verbose else None)
    return 0


def _info(args) -> int:
    from ..chain.spec import server_info
    if not args.chain_dir.is_dir():
        raise SystemExit(f"milagro chain info: no chain directory at {args.chain_dir} (run `milagro chain init`)")
    with _open(args.chain_dir) as source:
        tip, via = source.tip(), _via(source)
        _print({"chain_dir": str(args.chain_dir), "height": tip.height, "tip": to_display_hex(tip.block_hash),
                "mempool_size": len(source.mempool_txids()),
                "server": server_info(args.chain_dir) if via == "server" else None, "via": via})
    return 0

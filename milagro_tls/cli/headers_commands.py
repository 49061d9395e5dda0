"""``milagro chain headers sync``: verify and store a network's headers from any chain source."""
from __future__ import annotations

import argparse
import json
import time

from ..chain.hashes import to_display_hex
from ..chain.headerchain import HeaderChain, default_header_path
from ..chain.spec import open_source


def add_to(chain: argparse._SubParsersAction) -> None:
    headers = chain.add_parser("headers", help="the verified header chain").add_subparsers(dest="headers_action",
                                                                                         required=True)
    sync = headers.add_parser("sync", help="fetch headers from a source and verify them (PoW, linkage, "
                                           "difficulty, median-time-past)")
    sync.add_argument("--chain", required=True, help="regtest://DIR, bitcoind://..., esplora+https://...")
    sync.add_argument("--headers", default=None,
                      help="SQLite file (default: one per network in ~/.cache/milagro-tls; regtest in memory)")
    sync.set_defaults(func=_sync)


def _sync(args) -> int:
    with open_source(args.chain) as source:
        path = args.headers or default_header_path(source.network)
        with HeaderChain(path, source.network) as headers:
            started = time.perf_counter()
            added = headers.sync_from(source)
            elapsed = time.perf_counter() - started
            height, tip = headers.tip()
            print(json.dumps({"network": source.network.label, "headers": path, "added": added,
                              "height": height, "tip": to_display_hex(tip),
                              "chainwork": hex(headers.chainwork(tip)),
                              "headers_per_second": round(added / elapsed) if added and elapsed else None}))
    return 0

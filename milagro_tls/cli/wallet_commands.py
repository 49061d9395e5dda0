"""``milagro wallet address|balance|bump|rebroadcast``: the anchoring wallet of a party's home.

Every command prints one JSON line. The wallet pays from HOME/fee.key; its coins and
fee estimates are the chain source's word (identity.wallet says why that is enough).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..chain.hashes import from_display_hex, to_display_hex
from ..chain.spec import open_source
from ..chain.tx import vsize
from ..identity.wallet import AnchoringWallet


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, type=Path, help="the party's home directory (fee.key, wallet.json)")
    parser.add_argument("--chain", required=True, help="chain source, e.g. regtest://DIR or bitcoind://...")


def register(sub: argparse._SubParsersAction) -> None:
    wallet = sub.add_parser("wallet", help="the anchoring wallet (fee key)").add_subparsers(dest="action", required=True)

    address = wallet.add_parser("address", help="the funding address to show the operator")
    _common(address)
    address.set_defaults(func=_address)

    balance = wallet.add_parser("balance", help="confirmed and unconfirmed balance, low-balance warning")
    _common(balance)
    balance.set_defaults(func=_balance)

    bump = wallet.add_parser("bump", help="CPFP: a child spending TXID's change lifts the package's fee rate")
    bump.add_argument("txid", help="an unconfirmed transaction this wallet sent or tracks (display hex)")
    bump.add_argument("--fee-rate", type=float, default=None,
                      help="target sat/vB for parent + child (default: the estimate for the next block)")
    _common(bump)
    bump.set_defaults(func=_bump)

    rebroadcast = wallet.add_parser("rebroadcast", help="re-send every recorded transaction not yet confirmed")
    _common(rebroadcast)
    rebroadcast.set_defaults(func=_rebroadcast)


def _print(obj) -> None:
    print(json.dumps(obj), flush=True)


def _address(args) -> int:
    with open_source(args.chain) as source:
        wallet = AnchoringWallet(args.home, source)
        _print({"address": wallet.address(), "network": source.network.label})
    return 0


def _balance(args) -> int:
    with open_source(args.chain) as source:
        wallet = AnchoringWallet(args.home, source)
        balance = wallet.balance()
        _print({"address": wallet.address(), "confirmed": balance.confirmed, "unconfirmed": balance.unconfirmed,
                "pending": [e.txid_hex for e in wallet.pending()], "warning": wallet.check_low_balance()})
    return 0


def _bump(args) -> int:
    try:
        txid = from_display_hex(args.txid)
    except ValueError:
        raise SystemExit(f"milagro wallet bump: {args.txid!r} is not a txid") from None
    with open_source(args.chain) as source:
        wallet = AnchoringWallet(args.home, source)
        rate = wallet.fee_rate(1) if args.fee_rate is None else args.fee_rate
        child = wallet.bump(txid, rate)
        _print({"parent": args.txid, "child": child.txid_hex, "child_vsize": vsize(child.raw),
                "target_fee_rate": rate})
    return 0


def _rebroadcast(args) -> int:
    with open_source(args.chain) as source:
        wallet = AnchoringWallet(args.home, source)
        resent = wallet.rebroadcast_unconfirmed()
        _print({"resent": [to_display_hex(t) for t in resent], "pending": [e.txid_hex for e in wallet.pending()]})
    return 0

"""``milagro identity create|confirm|show|verify|revoke``.

On regtest ``create`` mines the anchor and prints its locator. On a real network (or
with ``--confirm 0``) it broadcasts and prints "waiting for confirmation"; ``confirm``
prints the locator once the anchor is mined, and exits with WAITING until then.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..chain.errors import ChainError, VerificationError
from ..chain.hashes import to_display_hex
from ..chain.headerchain import HeaderChain, default_header_path
from ..chain.spec import open_source
from ..chain.verify import DEFAULT_MIN_CONFIRMATIONS, resolve_anchor
from ..errors import MalformedInput
from ..identity.certificate import ROLES, BirthCertificate
from ..identity.locator import Locator
from ..identity.party import AnchorNotMined, Party
from ..identity.revoke import revoke_party

#: Exit status of ``identity confirm`` while the anchor is not mined (EX_TEMPFAIL: try again later).
WAITING = 75


def register(sub: argparse._SubParsersAction) -> None:
    identity = sub.add_parser("identity", help="anchored identities").add_subparsers(dest="action", required=True)

    create = identity.add_parser("create", help="generate keys and a birth certificate, anchor it")
    create.add_argument("--home", required=True, type=Path, help="the party's home directory (keys, certificates)")
    create.add_argument("--chain", required=True, help="chain source, e.g. regtest://DIR")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True)
    create.add_argument("--url", action="append", default=[], help="a URL to put in the certificate")
    create.add_argument("--confirm", type=int, default=DEFAULT_MIN_CONFIRMATIONS,
                        help="regtest: blocks to mine on top of the anchor, 0 for none (default %(default)s)")
    create.set_defaults(func=_create)

    confirm = identity.add_parser("confirm", help="record and print the locator once the anchor is mined")
    confirm.add_argument("name")
    confirm.add_argument("--home", required=True, type=Path)
    confirm.add_argument("--chain", required=True, help="chain source, e.g. regtest://DIR")
    confirm.set_defaults(func=_confirm)

    show = identity.add_parser("show", help="print an identity, or its trust-store entry")
    show.add_argument("name")
    show.add_argument("--home", required=True, type=Path)
    show.add_argument("--trust-entry", action="store_true", help="print a pinned trust-store entry")
    show.add_argument("--certificate", action="store_true", help="print the canonical birth certificate")
    show.set_defaults(func=_show)

    revoke = identity.add_parser("revoke", help="revoke a single-anchored identity: spend its seal (final)")
    revoke.add_argument("name")
    revoke.add_argument("--home", required=True, type=Path)
    revoke.add_argument("--chain", required=True, help="chain source, e.g. regtest://DIR")
    revoke.add_argument("--fee-rate", type=float, default=None, help="sat/vB (default: the wallet's estimate)")
    revoke.add_argument("--yes", action="store_true", help="required: revocation cannot be undone")
    revoke.set_defaults(func=_revoke)

    verify = identity.add_parser("verify", help="verify a locator and certificate against the chain")
    verify.add_argument("--chain", required=True)
    verify.add_argument("--locator", required=True, help="a JSON file, or the JSON itself")
    verify.add_argument("--cert", required=True, type=Path, help="the canonical birth certificate file")
    verify.add_argument("--min-conf", type=int, default=DEFAULT_MIN_CONFIRMATIONS)
    verify.add_argument("--headers", default=None,
                        help="header chain SQLite file (default: one per network in ~/.cache/milagro-tls; "
                             "regtest in memory)")
    verify.set_defaults(func=_verify)


def _create(args) -> int:
    with open_source(args.chain) as source:
        party = Party.create(args.home, source, role=args.role, name=args.name, urls=tuple(args.url),
                             confirm_blocks=args.confirm)
    if party.locator is None:
        _print_waiting(party, args)
    else:
        print(json.dumps(party.locator.to_json()))
    return 0


def _print_waiting(party: Party, args) -> None:
    print(f"waiting for confirmation of anchor {to_display_hex(party.anchor_txid)}; once it is mined, run "
          f"`milagro identity confirm {party.name} --home {args.home} --chain {args.chain}`")


def _confirm(args) -> int:
    party = Party.load(args.home, args.name)
    with open_source(args.chain) as source:
        try:
            locator = party.confirm(source)
        except AnchorNotMined:
            _print_waiting(party, args)
            return WAITING
    print(json.dumps(locator.to_json()))
    return 0


def _show(args) -> int:
    party = Party.load(args.home, args.name)
    if args.certificate:
        sys.stdout.write(party.certificate.canonical_bytes().decode() + "\n")
    elif args.trust_entry:
        print(json.dumps(party.trust_entry(), indent=2))
    else:
        print(json.dumps(party.describe(), indent=2))
    return 0


def _revoke(args) -> int:
    if not args.yes:
        print(f"revoking {args.name} cannot be undone; run again with --yes", file=sys.stderr)
        return 2
    with open_source(args.chain) as source:
        revocation = revoke_party(args.home, args.name, source, fee_rate=args.fee_rate)
    print(json.dumps({"name": revocation.name, "revocation_txid": revocation.txid_hex,
                      "seal": f"{to_display_hex(revocation.seal[0])}:{revocation.seal[1]}"}))
    return 0


def _read_locator(text: str) -> Locator:
    candidate = Path(text)
    raw = candidate.read_text() if not text.lstrip().startswith("{") and candidate.exists() else text
    try:
        return Locator.from_json(json.loads(raw))
    except json.JSONDecodeError:
        raise MalformedInput("--locator is neither a JSON file nor JSON") from None


def _verify(args) -> int:
    try:
        locator = _read_locator(args.locator)
        # A file written by `identity show --certificate` ends with a newline; the digest is over
        # the canonical bytes without it.
        certificate = BirthCertificate.parse(args.cert.read_bytes().rstrip(b"\n"))
        with open_source(args.chain) as source:
            headers = HeaderChain(args.headers or default_header_path(source.network), source.network)
            identity, _ = resolve_anchor(locator, certificate, source, headers,
                                         min_confirmations=args.min_conf)
    except (VerificationError, ChainError, MalformedInput, OSError) as exc:
        print(f"invalid: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"valid: {certificate.role} {certificate.name!r} anchored in {locator.txid_hex}:{locator.input_index} "
          f"at height {identity.height} ({identity.confirmations} confirmations); marker digest, "
          f"witness key, ECDSA signature, txid and wtxid Merkle branches and header chain checked; "
          f"nonce point {identity.nonce_point.hex()}")
    return 0

"""``milagro pat enrol|update|connect``: a PAT's command line (its home is all the device keeps).

    milagro pat enrol --home H --tbs HOST:PORT --tbs-locator LOC [--checkpoint HEIGHT:HASH]
                      [--name NAME] [--min-confirmations N] [--timeout S] [--interval S]
    milagro pat update --home H [--min-confirmations N]
    milagro pat connect --home H URL [--name PINNED_NAME] [--min-confirmations N]

``--tbs-locator`` is the locator JSON, or @FILE holding it (a trust entry with a "locator"
will do). enrol prints progress on stderr and one JSON object on stdout once the first
instructions are installed; update prints {"updated": bool, "version"}; connect prints the
response body and exits 0 for a 2xx answer, 1 otherwise.

A PAT its TBS has revoked (flow.PatRevoked: the TBS's word, checked as flow.py says) prints
{"revoked": true, "name", "certificate_digest", "tbs"} on stdout and exits 3, whichever command.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    pat = sub.add_parser("pat", help="a PAT (thin client): enrol through a TBS, field updates, connect").add_subparsers(
        dest="action", required=True)

    enrol = pat.add_parser("enrol", help="enrol through a TBS: anchored in its next batch, first instructions installed")
    enrol.add_argument("--home", required=True, type=Path, help="the PAT's home directory (all the device keeps)")
    enrol.add_argument("--tbs", default=None, metavar="HOST:PORT", help="the TBS (needed on a first enrol)")
    enrol.add_argument("--tbs-locator", default=None, metavar="LOC",
                       help="the TBS's locator as JSON, or @FILE (needed on a first enrol)")
    enrol.add_argument("--checkpoint", default=None, metavar="HEIGHT:HASH",
                       help="header checkpoint shipped with the device (default: the genesis block)")
    enrol.add_argument("--name", default=None, help="the PAT's identity name (default: pat-<random>)")
    enrol.add_argument("--min-confirmations", type=int, default=6, help="for the TBS's anchor (default 6)")
    enrol.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for anchoring (default 600)")
    enrol.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    enrol.set_defaults(func=_enrol)

    update = pat.add_parser("update", help="fetch and install newer instructions over milagro-tls")
    update.add_argument("--home", required=True, type=Path)
    update.add_argument("--min-confirmations", type=int, default=6)
    update.set_defaults(func=_update)

    connect = pat.add_parser("connect", help="one GET over milagro-tls with the PAT's identity to a pinned peer")
    connect.add_argument("--home", required=True, type=Path)
    connect.add_argument("url", help="https://HOST:PORT/PATH")
    connect.add_argument("--name", default=None, help="the peer's pinned name (default: the URL's host)")
    connect.add_argument("--min-confirmations", type=int, default=6)
    connect.set_defaults(func=_connect)
    for command in (enrol, update, connect):
        command.set_defaults(func=_reporting_revoked(command.get_default("func")))


#: Exit status of a PAT its TBS has revoked.
EXIT_REVOKED = 3


def _reporting_revoked(run):
    def wrapped(args) -> int:
        from .flow import PatRevoked
        try:
            return run(args)
        except PatRevoked as revoked:
            print(json.dumps(revoked.to_json()), flush=True)
            print(str(revoked), file=sys.stderr)
            return EXIT_REVOKED
    return wrapped


def _locator_arg(text: str | None):
    if text is None:
        return None
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        doc = json.loads(raw)
    except ValueError:
        raise SystemExit(f"--tbs-locator is not JSON: {text[:80]!r}") from None
    if isinstance(doc, dict) and "locator" in doc:
        doc = doc["locator"]
    return doc


def _enrol(args) -> int:
    from .flow import enrol
    result = enrol(args.home, args.tbs, _locator_arg(args.tbs_locator), checkpoint=args.checkpoint, name=args.name,
                   min_confirmations=args.min_confirmations, timeout=args.timeout, interval=args.interval,
                   progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps(result.to_json()), flush=True)
    return 0


def _update(args) -> int:
    from .flow import update
    from .state import PatHome
    installed = update(args.home, min_confirmations=args.min_confirmations)
    version = PatHome(args.home).load().installed_version
    print(json.dumps({"updated": installed is not None, "version": version}), flush=True)
    return 0


def _connect(args) -> int:
    from .flow import connect
    response = connect(args.home, args.url, name=args.name, min_confirmations=args.min_confirmations)
    sys.stdout.write(response.text)
    if response.text and not response.text.endswith("\n"):
        sys.stdout.write("\n")
    print(f"HTTP {response.status_code}", file=sys.stderr)
    return 0 if 200 <= response.status_code < 300 else 1

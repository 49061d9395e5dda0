"""``milagro dta serve``, ``milagro dta service add`` and ``milagro dta user revoke``.

    milagro dta serve --home H --chain SPEC --port P --idp ISSUER_URL [--idp ...] [--idp-trust FILE]
                      [--idp-ca FILE] [--db URL] [--cert C --key K] [--workers N] [--period S]
                      [--name NAME] [--base-url URL] [--idp-registration-token T]
    milagro dta service add --home H --locator-file F --name NAME [--db URL]
    milagro dta user revoke --home H --issuer ISS --sub SUB [--db URL]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    dta = sub.add_parser("dta", help="the distributed trusted authority (M-Pin key shares)").add_subparsers(
        dest="action", required=True)

    serve = dta.add_parser("serve", help="serve the D-TA under gunicorn (Bitcoin suites and X.509 on one port)")
    serve.add_argument("--home", required=True, type=Path, help="the D-TA's home directory")
    serve.add_argument("--chain", required=True, help="chain source: regtest://DIR, bitcoind://..., esplora+https://...")
    serve.add_argument("--port", required=True, type=int, help="TCP port (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--idp", action="append", required=True, metavar="ISSUER_URL",
                       help="an OpenID Connect issuer this D-TA logs users in with (repeatable)")
    serve.add_argument("--idp-trust", default=None, help="trust file pinning the IdPs (entries with role idp)")
    serve.add_argument("--idp-ca", default=None, help="CA file for IdPs reached over ordinary HTTPS")
    serve.add_argument("--idp-registration-token", default=None, help="initial access token for IdP registration")
    serve.add_argument("--base-url", default=None, help="public URL (default https://localhost:PORT)")
    serve.add_argument("--name", default="dta", help="the identity's name in --home (default dta)")
    serve.add_argument("--db", default=None, help="database URL (default: SQLite in --home)")
    serve.add_argument("--cert", default=None, help="X.509 certificate for browsers (default: generated)")
    serve.add_argument("--key", default=None, help="its private key")
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--period", type=int, default=60, help="activity-log period in seconds (default 60)")
    serve.set_defaults(func=_serve)

    service = dta.add_parser("service", help="relying services allowed to get server-secret shares").add_subparsers(
        dest="service_action", required=True)
    add = service.add_parser("add", help="register a relying service by its locator")
    add.add_argument("--home", required=True, type=Path)
    add.add_argument("--locator-file", required=True, type=Path,
                     help="JSON: a locator, or an object with a locator (a trust entry)")
    add.add_argument("--name", required=True)
    add.add_argument("--db", default=None)
    add.set_defaults(func=_service_add)

    user = dta.add_parser("user", help="users").add_subparsers(dest="user_action", required=True)
    revoke = user.add_parser("revoke", help="issue no more shares to a user")
    revoke.add_argument("--home", required=True, type=Path)
    revoke.add_argument("--issuer", required=True)
    revoke.add_argument("--sub", required=True,
                        help="the user's sub at that issuer (write --sub=VALUE when it starts with '-')")
    revoke.add_argument("--db", default=None)
    revoke.set_defaults(func=_user_revoke)


def _serve(args) -> int:
    from ..serving import free_port, serve_role
    from .service import DtaSettings, prepare

    port = args.port or free_port(args.host)
    base_url = (args.base_url or f"https://localhost:{port}").rstrip("/")
    settings = DtaSettings(home=str(args.home), chain=args.chain, base_url=base_url,
                           idps=[issuer.rstrip("/") for issuer in args.idp], name=args.name, db=args.db,
                           period=args.period, idp_trust=args.idp_trust, idp_ca=args.idp_ca,
                           idp_registration_token=args.idp_registration_token)
    # Any anchored party may start a login; the app knows it by its verified locator.
    return serve_role(chain=args.chain, prepare=lambda source: prepare(settings, source),
                      app="milagro_tls.roles.dta.service:worker_app", app_kwargs=settings.to_kwargs(),
                      host=args.host, port=port, workers=args.workers, cert=args.cert, key=args.key,
                      context_options={"accept_anchored_clients": True},
                      announce=lambda party, certfile: {"base_url": base_url, "ca_file": str(certfile),
                                                        "name": args.name, "locator": party.locator.to_json(),
                                                        "idps": settings.idps})


def read_locator_file(path: Path):
    from ...identity.locator import Locator
    doc = json.loads(path.read_text())
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]                      # a trust file with one entry
    if isinstance(doc, dict) and isinstance(doc.get("locator"), dict):
        doc = doc["locator"]
    return Locator.from_json(doc)


def _service_add(args) -> int:
    from ..store import open_store
    from . import tables
    from .issuance import add_service
    from .logins import DtaError

    locator = read_locator_file(args.locator_file)
    store = open_store(args.db, args.home)
    try:
        tables.migrate(store)
        try:
            added = add_service(store, locator, args.name)
        except DtaError as exc:
            print(exc.description, file=sys.stderr)
            return 1
    finally:
        store.close()
    print(json.dumps(added), flush=True)
    return 0


def _user_revoke(args) -> int:
    from ..store import open_store
    from . import tables
    from .issuance import revoke_user

    store = open_store(args.db, args.home)
    try:
        tables.migrate(store)
        newly = revoke_user(store, args.issuer.rstrip("/"), args.sub)
    finally:
        store.close()
    print(json.dumps({"issuer": args.issuer.rstrip("/"), "sub": args.sub, "revoked": True, "new": newly}), flush=True)
    return 0

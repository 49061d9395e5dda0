"""``milagro idp serve`` and ``milagro idp user add``.

    milagro idp serve --home H --chain SPEC --port P [--db URL] [--cert C --key K] [--workers N]
                      [--period S] [--registration-token T] [--issuer URL] [--name NAME]
    milagro idp user add --home H NAME --password PW [--db URL]
    milagro idp keys rotate --home H      (running workers pick the new keys up on their next token)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    idp = sub.add_parser("idp", help="the OpenID Connect provider").add_subparsers(dest="action", required=True)

    serve = idp.add_parser("serve", help="serve the IdP under gunicorn (one port: Bitcoin suites and X.509)")
    serve.add_argument("--home", required=True, type=Path, help="the IdP's home directory")
    serve.add_argument("--chain", required=True, help="chain source: regtest://DIR, bitcoind://..., esplora+https://...")
    serve.add_argument("--port", required=True, type=int, help="TCP port (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--issuer", default=None, help="issuer URL (default https://localhost:PORT)")
    serve.add_argument("--name", default="idp", help="the identity's name in --home (default idp)")
    serve.add_argument("--db", default=None, help="database URL (default: SQLite in --home)")
    serve.add_argument("--cert", default=None, help="X.509 certificate for standard clients (default: generated)")
    serve.add_argument("--key", default=None, help="its private key")
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--period", type=int, default=60, help="activity-log period in seconds (default 60)")
    serve.add_argument("--registration-token", default=None,
                       help="initial access token required to register clients (default: open registration)")
    serve.set_defaults(func=_serve)

    user = idp.add_parser("user", help="manage people who log in").add_subparsers(dest="user_action", required=True)
    add = user.add_parser("add", help="add a user with an argon2id password hash")
    add.add_argument("--home", required=True, type=Path)
    add.add_argument("username")
    add.add_argument("--password", required=True)
    add.add_argument("--db", default=None)
    add.set_defaults(func=_user_add)

    keys = idp.add_parser("keys", help="the ID-token signing keys").add_subparsers(dest="keys_action", required=True)
    rotate = keys.add_parser("rotate", help="retire the current keys (served until their tokens expire) and make new ones")
    rotate.add_argument("--home", required=True, type=Path)
    rotate.set_defaults(func=_keys_rotate)


def _serve(args) -> int:
    from ..serving import free_port, serve_role
    from .service import IdPSettings, prepare

    port = args.port or free_port(args.host)
    issuer = (args.issuer or f"https://localhost:{port}").rstrip("/")
    settings = IdPSettings(home=str(args.home), chain=args.chain, issuer=issuer, name=args.name, db=args.db,
                           period=args.period, registration_token=args.registration_token)
    return serve_role(chain=args.chain, prepare=lambda source: prepare(settings, source),
                      app="milagro_tls.roles.idp.service:worker_app", app_kwargs=settings.to_kwargs(),
                      host=args.host, port=port, workers=args.workers, cert=args.cert, key=args.key,
                      announce=lambda party, certfile: {"issuer": issuer, "ca_file": str(certfile), "name": args.name})


def _user_add(args) -> int:
    from ..store import open_store
    from . import tables
    from .users import add_user

    store = open_store(args.db, args.home)
    try:
        tables.migrate(store)
        user = add_user(store, args.username, args.password)
    finally:
        store.close()
    print(json.dumps({"username": user.username, "sub": user.sub}), flush=True)
    return 0


def _keys_rotate(args) -> int:
    from .keys import KeyRing
    from .config import TOKEN_LIFETIME
    from .service import keys_dir

    ring = KeyRing(keys_dir(str(args.home)), token_lifetime=TOKEN_LIFETIME).ensure()
    fresh = ring.rotate()
    served = [record.kid for record in ring.records]
    print(json.dumps({"new": fresh, "served": served}), flush=True)
    return 0

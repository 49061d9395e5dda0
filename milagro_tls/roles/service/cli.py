"""``milagro service init`` and ``milagro service serve``: the relying service that checks M-Pin.

    milagro service init  --home H --chain SPEC [--name NAME] [--locator-file OUT]
    milagro service serve --home H --chain SPEC --port P --dta [NAME=]URL --dta URL ...
                          [--dta-trust FILE] [--db URL] [--cert C --key K] [--workers N]

``init`` creates the anchored identity and prints its trust entry (and writes its locator to
OUT): register it at each D-TA with ``milagro dta service add --locator-file OUT`` before the
first ``serve``. ``serve`` fetches SS_i from every ``--dta`` over milagro-tls at each start (the
D-TAs pinned by ``--dta-trust``, under NAME or the URL's host), sums them, and serves
POST /mpin/pass1 and /mpin/pass2 on one port to milagro-tls clients and, through the fallback
certificate, to standard HTTPS clients.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    service = sub.add_parser("service", help="the relying service that checks M-Pin").add_subparsers(
        dest="action", required=True)

    init = service.add_parser("init", help="create the service's anchored identity; print its trust entry")
    init.add_argument("--home", required=True, type=Path)
    init.add_argument("--chain", required=True, help="chain source: regtest://DIR, bitcoind://..., esplora+https://...")
    init.add_argument("--name", default="service", help="the identity's name in --home (default service)")
    init.add_argument("--locator-file", type=Path, default=None, help="also write the locator (JSON) here")
    init.set_defaults(func=_init)

    serve = service.add_parser("serve", help="serve M-Pin authentication under gunicorn")
    serve.add_argument("--home", required=True, type=Path)
    serve.add_argument("--chain", required=True)
    serve.add_argument("--port", required=True, type=int, help="TCP port (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--name", default="service")
    serve.add_argument("--dta", action="append", required=True, metavar="[NAME=]URL",
                       help="a D-TA this service gets its server-secret share from (at least two)")
    serve.add_argument("--dta-trust", default=None, help="trust file pinning the D-TAs (entries with role 'dta')")
    serve.add_argument("--db", default=None, help="database URL (default: SQLite in --home)")
    serve.add_argument("--cert", default=None, help="X.509 certificate for standard clients (default: generated)")
    serve.add_argument("--key", default=None)
    serve.add_argument("--workers", type=int, default=2)
    serve.set_defaults(func=_serve)


def _init(args) -> int:
    from ...chain.spec import open_source
    from ..serving import chain_service
    from .service import ServiceSettings, prepare

    with chain_service(args.chain):
        source = open_source(args.chain)
        try:
            _, party = prepare(ServiceSettings(home=str(args.home), chain=args.chain, name=args.name), source)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
    if args.locator_file is not None:
        args.locator_file.write_text(json.dumps(party.locator.to_json()) + "\n")
    print(json.dumps({"name": args.name, "locator": party.locator.to_json(),
                      "trust_entry": party.trust_entry()}), flush=True)
    return 0


def _serve(args) -> int:
    from ...trust import TrustStore
    from ..serving import serve_role
    from .service import ServiceSettings, fetch_server_secret, parse_dta, prepare

    for spec in args.dta:
        parse_dta(spec)                     # refuse a bad --dta before anything starts
    settings = ServiceSettings(home=str(args.home), chain=args.chain, name=args.name, db=args.db,
                               dtas=list(args.dta), dta_trust=args.dta_trust)
    trust = TrustStore.load(args.dta_trust) if args.dta_trust else TrustStore()
    fetched: list[dict] = []
    # One Context for both sides: as a client it pins the D-TAs it fetches SS_i from; as the
    # server it lets any anchored client connect (M-Pin, not the transport, authenticates the
    # user) and standard clients reach the fallback certificate.
    return serve_role(chain=args.chain, prepare=lambda source: prepare(settings, source),
                      app="milagro_tls.roles.service.service:worker_app", app_kwargs=settings.to_kwargs(),
                      host=args.host, port=args.port, workers=args.workers, cert=args.cert, key=args.key,
                      context_options={"trust": trust, "accept_anchored_clients": True},
                      before_serve=lambda context: fetched.extend(fetch_server_secret(settings, context)),
                      announce=lambda party, certfile: {"ca_file": str(certfile), "name": args.name,
                                                        "dtas": [entry["name"] for entry in fetched]})


"""``milagro tbs serve`` and ``milagro tbs admin ...`` (scripted set-up).

    milagro tbs serve --home H --chain SPEC --port P [--db URL] [--admin-port P2] [--workers N]
                      [--period S] [--batch-wait S] [--max-batch N] [--gather S]
                      [--min-confirmations N] [--lease S] [--name NAME] [--base-url URL]
                      [--cert C --key K] [--host H]
    milagro tbs admin user add --home H NAME --password PW [--db URL]
    milagro tbs admin group add --home H --name G [--dta URL ...] [--trust FILE ...] [--chain SPEC] [--db URL]
    milagro tbs admin group default --home H G [--db URL]
    milagro tbs admin push --home H G [--db URL]
    milagro tbs admin revoke --home H (--pat NAME | --digest HEX) [--reason TEXT] --yes [--db URL]

``serve`` prints one JSON line once it listens: {"listening", "url", "base_url", "ca_file",
"locator", "admin_port", "enrolment_key", "batch_key", ...}. ``--admin-port`` binds a second
socket in the same gunicorn for the admin UI. Trust files (``--trust``) hold one entry or a list,
each with its certificate (the chain holds only its digest); they are verified against the chain
(``--chain``) before they are stored.

``revoke`` records a batch-anchored PAT's certificate digest as revoked (idempotent; a PAT name
is looked up among the enrolments) and prints {"digest", "revoked", "new", "revoked_at",
"reason", "list_number", "enrolled_here"[, "pat"]}. The TBS answers it revoked at once
(GET /chain/revocation/<digest>) and refuses the PAT's milagro-tls handshakes with its
batch-anchored identity (alert certificate_revoked, 44; its MAC-authenticated enrolment
endpoints answer 403 pat_revoked); a running worker anchors the next revocation list with it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    tbs = sub.add_parser("tbs", help="the Trusted Bitcoin Server (enrols PATs in taproot batches)").add_subparsers(
        dest="action", required=True)

    serve = tbs.add_parser("serve", help="serve the TBS under gunicorn (Bitcoin suites and X.509 on one port)")
    serve.add_argument("--home", required=True, type=Path, help="the TBS's home directory")
    serve.add_argument("--chain", required=True, help="chain source: regtest://DIR, bitcoind://..., esplora+https://...")
    serve.add_argument("--port", required=True, type=int, help="TCP port (0: any free port)")
    serve.add_argument("--admin-port", type=int, default=None, help="a second port for the admin UI (0: any free)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--base-url", default=None, help="public URL (default https://localhost:PORT)")
    serve.add_argument("--name", default="tbs", help="the identity's name in --home (default tbs)")
    serve.add_argument("--db", default=None, help="database URL (default: SQLite in --home)")
    serve.add_argument("--cert", default=None, help="X.509 certificate for browsers (default: generated)")
    serve.add_argument("--key", default=None, help="its private key")
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--period", type=int, default=60, help="activity-log period in seconds (default 60)")
    serve.add_argument("--max-batch", type=int, default=128, help="PATs per batch transaction (default 128)")
    serve.add_argument("--gather", type=float, default=2.0,
                       help="seconds the first waiting PAT waits for others before a batch opens (default 2)")
    serve.add_argument("--batch-wait", type=float, default=30.0,
                       help="seconds a batch waits for its PATs' signatures (default 30)")
    serve.add_argument("--min-confirmations", type=int, default=1,
                       help="confirmations before a batch is settled (default 1)")
    serve.add_argument("--lease", type=float, default=60.0,
                       help="seconds after which a batch step of a silent worker is taken over (default 60)")
    serve.set_defaults(func=_serve)

    admin = tbs.add_parser("admin", help="scripted set-up: admin users, device groups, pushes").add_subparsers(
        dest="admin_action", required=True)

    user = admin.add_parser("user", help="admin users of the web UI").add_subparsers(dest="user_action", required=True)
    add_user = user.add_parser("add", help="add an admin user")
    add_user.add_argument("--home", required=True, type=Path)
    add_user.add_argument("name")
    add_user.add_argument("--password", required=True)
    add_user.add_argument("--db", default=None)
    add_user.set_defaults(func=_user_add)

    group = admin.add_parser("group", help="device groups").add_subparsers(dest="group_action", required=True)
    add_group = group.add_parser("add", help="add a device group (its D-TAs and trust entries)")
    add_group.add_argument("--home", required=True, type=Path)
    add_group.add_argument("--name", required=True)
    add_group.add_argument("--dta", action="append", default=[], metavar="URL", help="a D-TA URL (repeatable)")
    add_group.add_argument("--trust", action="append", default=[], type=Path, metavar="FILE",
                           help="a trust file: an entry or a list, each with its certificate (repeatable)")
    add_group.add_argument("--chain", default=None, help="chain source to verify --trust entries against")
    add_group.add_argument("--db", default=None)
    add_group.set_defaults(func=_group_add)
    default = group.add_parser("default", help="the group new enrolments join")
    default.add_argument("--home", required=True, type=Path)
    default.add_argument("group")
    default.add_argument("--db", default=None)
    default.set_defaults(func=_group_default)

    push = admin.add_parser("push", help="publish a group's D-TAs and trust entries as a new instruction version")
    push.add_argument("--home", required=True, type=Path)
    push.add_argument("group")
    push.add_argument("--db", default=None)
    push.set_defaults(func=_push)

    revoke = admin.add_parser("revoke", help="revoke a batch-anchored PAT (its certificate digest)")
    revoke.add_argument("--home", required=True, type=Path)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--pat", default=None, metavar="NAME", help="an enrolled PAT's certificate name")
    which.add_argument("--digest", default=None, metavar="HEX", help="a certificate digest (64 hex)")
    revoke.add_argument("--reason", default="", help="kept with the revocation (not published)")
    revoke.add_argument("--yes", action="store_true", help="confirm: a revocation cannot be undone")
    revoke.add_argument("--db", default=None)
    revoke.set_defaults(func=_revoke)


def _free_ports(host: str, count: int) -> list[int]:
    """Distinct free ports, all held until all are found."""
    import socket
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _serve(args) -> int:
    from ..serving import serve_role
    from .revocations import OwnPatRevocations
    from .service import TbsSettings, enrolment_key, prepare

    free = iter(_free_ports(args.host, 2))
    port = args.port or next(free)
    admin_port = None if args.admin_port is None else (args.admin_port or next(free))
    if admin_port == port:
        print("--admin-port must differ from --port", file=sys.stderr)
        return 2
    base_url = (args.base_url or f"https://localhost:{port}").rstrip("/")
    settings = TbsSettings(home=str(args.home), chain=args.chain, base_url=base_url, name=args.name, db=args.db,
                           period=args.period, admin_port=admin_port, max_batch=args.max_batch, gather=args.gather,
                           batch_wait=args.batch_wait, min_confirmations=args.min_confirmations, lease=args.lease)
    host = f"[{args.host}]" if ":" in args.host else args.host
    binds = [f"{host}:{port}"] + ([f"{host}:{admin_port}"] if admin_port is not None else [])

    def announce(party, certfile) -> dict:
        return {"base_url": base_url, "ca_file": str(certfile), "name": args.name,
                "locator": party.locator.to_json(), "admin_port": admin_port,
                "admin_url": f"https://localhost:{admin_port}" if admin_port is not None else None,
                "enrolment_key": enrolment_key(Path(args.home)).public_key.format().hex(),
                "batch_key": party.certificate.batch_key.hex()}

    # New PATs connect anonymously (require_client_identity stays False); anchored PATs are known
    # by their verified locator (/pat/instructions), at the depth this TBS settles its batches
    # at: a PAT it calls anchored can fetch its updates. A PAT this TBS revoked is refused in
    # the handshake (certificate_revoked) by its own store (revocations.OwnPatRevocations).
    context_options = {"accept_anchored_clients": True, "min_confirmations": args.min_confirmations}

    def prepared(source):
        home, party = prepare(settings, source)
        # serve_role builds the Context from context_options after prepare: the checker takes
        # the batching key the identity names (the key every PAT of this TBS names).
        context_options["batch_revocation"] = OwnPatRevocations(args.home, args.db, party.certificate.batch_key)
        return home, party

    return serve_role(chain=args.chain, prepare=prepared,
                      app="milagro_tls.roles.tbs.service:worker_app", app_kwargs=settings.to_kwargs(),
                      host=args.host, port=port, workers=args.workers, cert=args.cert, key=args.key,
                      context_options=context_options, announce=announce, gunicorn={"bind": binds})


def _open(args):
    from ..store import open_store
    from . import tables
    store = open_store(args.db, args.home)
    tables.migrate(store)
    return store


def _refused(error) -> int:
    print(f"{getattr(error, 'error', type(error).__name__)}: {getattr(error, 'description', error)}", file=sys.stderr)
    return 1


def _user_add(args) -> int:
    from .admin import add_admin, migrate
    from .admin.accounts import AccountError
    store = _open(args)
    try:
        migrate(store)
        try:
            add_admin(store, args.name, args.password)
        except AccountError as error:
            print(str(error), file=sys.stderr)
            return 1
    finally:
        store.close()
    print(json.dumps({"admin": args.name, "added": True}), flush=True)
    return 0


def _verified_entries(args) -> list[dict]:
    """Every --trust file's entries, verified against --chain (admin/trust.py)."""
    from ...chain.headerchain import HeaderChain
    from ...chain.spec import open_source
    from ..serving import chain_service
    from .admin.trust import ChainAccess, TrustCheckError, verify_pasted

    if not args.trust:
        return []
    if args.chain is None:
        raise SystemExit("--trust needs --chain: entries are verified against the chain before they are stored")
    entries = []
    with chain_service(args.chain):
        source = open_source(args.chain)
        headers = HeaderChain(str(Path(args.home) / "headers.db"), source.network)
        try:
            for path in args.trust:
                try:
                    entries += [v.entry for v in verify_pasted(path.read_text(), ChainAccess(source, headers))]
                except TrustCheckError as error:
                    raise SystemExit(f"{path}: {error}") from None
        finally:
            headers.close()
            close = getattr(source, "close", None)
            if close:
                close()
    return entries


def _group_add(args) -> int:
    from . import groups
    entries = _verified_entries(args)
    store = _open(args)
    try:
        try:
            groups.add_group(store, args.name, [url.rstrip("/") for url in args.dta])
            if entries:
                groups.set_group_trust(store, args.name, entries)
        except groups.TbsError as error:
            return _refused(error)
        row = groups.get_group(store, args.name)
    finally:
        store.close()
    print(json.dumps(row.to_json()), flush=True)
    return 0


def _group_default(args) -> int:
    from . import groups
    store = _open(args)
    try:
        if not groups.set_default_group(store, args.group):
            print(f"unknown_group: no group {args.group!r}", file=sys.stderr)
            return 1
    finally:
        store.close()
    print(json.dumps({"default_group": args.group}), flush=True)
    return 0


def _push(args) -> int:
    from . import groups
    store = _open(args)
    try:
        try:
            version, pats = groups.push_instructions(store, args.group)
        except groups.TbsError as error:
            return _refused(error)
    finally:
        store.close()
    print(json.dumps({"group": args.group, "version": version, "pats": pats}), flush=True)
    return 0


def _revoke(args) -> int:
    from .groups import TbsError
    from .revocations import digest_of_pat, parse_digest, revoke
    if not args.yes:
        print("a revocation cannot be undone: add --yes", file=sys.stderr)
        return 2
    store = _open(args)
    try:
        try:
            digest = digest_of_pat(store, args.pat) if args.pat is not None else parse_digest(args.digest)
            done = revoke(store, digest, args.reason)
        except TbsError as error:
            return _refused(error)
    finally:
        store.close()
    if args.pat is not None:
        done["pat"] = args.pat
    print(json.dumps(done), flush=True)
    return 0

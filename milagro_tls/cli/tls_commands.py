"""``milagro serve echo`` and ``milagro connect``: the drop-in Context on real sockets.

    milagro serve echo --home H --chain SPEC --identity NAME --port P [--trust FILE] ...
    milagro connect --home H --chain SPEC [--identity NAME] --trust FILE HOST:PORT [--send TEXT]

A trust file is the JSON list of pinned entries that ``milagro identity show NAME
--trust-entry`` prints one at a time. Both commands print the negotiated suite and the peer
the trust store verified. ``regtest://DIR`` needs ``milagro chain serve`` running on DIR:
the server keeps its chain source open, and the embedded node admits one process at a time.
"""
from __future__ import annotations

import argparse
import signal
import socket
import ssl
import sys
from pathlib import Path

from ..echo_server import (DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, EchoServer, describe_address,
                           describe_failure, print_line)


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="TLS servers over a milagro Context").add_subparsers(
        dest="service", required=True)
    echo = serve.add_parser("echo", help="echo every connection back until EOF, one line per connection")
    _common(echo)
    echo.add_argument("--identity", required=True, help="the server's anchored identity in --home")
    echo.add_argument("--port", required=True, type=int, help="TCP port (0: any free port)")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--trust", type=Path, default=None,
                      help="trust file (JSON list of entries) for client identities; without it, "
                           "only anonymous clients are served")
    echo.add_argument("--require-client-identity", action="store_true",
                      help="refuse anonymous clients (handshake_failure)")
    echo.add_argument("--allow-role", action="append", metavar="ROLE", dest="allow_roles", default=None,
                      help="accept client identities pinned with this role (repeat for more); default: any")
    echo.add_argument("--fallback-cert", type=Path, default=None,
                      help="PEM certificate chain served to standard TLS clients (Python ssl)")
    echo.add_argument("--fallback-key", type=Path, default=None,
                      help="its private key (default: in --fallback-cert)")
    echo.add_argument("--max-staple-size", type=int, default=None,
                      help="largest client certificate + proof accepted, in bytes")
    echo.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                      help="seconds a client may take over its handshake, or stay silent after it "
                           "(default %(default)g)")
    echo.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                      help="connections served at once; more are closed at once (default %(default)s)")
    echo.set_defaults(func=_serve_echo)

    connect = sub.add_parser("connect", help="connect, print the suite and the verified server, optionally echo")
    _common(connect)
    connect.add_argument("address", metavar="HOST:PORT")
    connect.add_argument("--identity", default=None, help="our anchored identity in --home (default: anonymous)")
    connect.add_argument("--trust", required=True, type=Path, help="trust file pinning the server")
    connect.add_argument("--server-name", default=None,
                         help="the server's name in the trust file (default: HOST)")
    connect.add_argument("--send", default=None, metavar="TEXT", help="send TEXT and print what comes back")
    connect.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                         help="seconds for the connection, the handshake and each read (default %(default)g)")
    connect.set_defaults(func=_connect)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", required=True, type=Path, help="the party's home directory")
    parser.add_argument("--chain", required=True,
                        help="chain source: regtest://DIR (with `milagro chain serve` running), "
                             "bitcoind://..., esplora+https://...")
    parser.add_argument("--suite", choices=("ecdh", "yak"), default=None, help="offer one family only")
    parser.add_argument("--min-confirmations", type=int, default=None,
                        help="depth the peer's anchor must have (default: the library's, 6)")


def _context_options(args) -> dict:
    options = {"home": args.home, "chain": args.chain, "suites": args.suite}
    if args.min_confirmations is not None:
        options["min_confirmations"] = args.min_confirmations
    return options


# --- what one connection established or why it failed ---------------------------------------
def _serve_echo(args) -> int:
    from ..context import Context
    options = _context_options(args)
    if args.max_staple_size is not None:
        options["max_staple_size"] = args.max_staple_size
    fallback = (args.fallback_cert, args.fallback_key) if args.fallback_cert else None
    try:
        context = Context(identity=args.identity, trust=args.trust, fallback_certificate=fallback,
                          require_client_identity=args.require_client_identity,
                          allowed_client_roles=args.allow_roles, **options)
    except (ValueError, OSError) as exc:          # ssl.SSLError (a bad certificate) is an OSError
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    with context:
        try:
            server = EchoServer(context, args.host, args.port, timeout=args.timeout,
                                max_connections=args.max_connections)
        except (OSError, ValueError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        previous = {sig: signal.signal(sig, lambda *_: server.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            print_line(f"listening on {server.where}")
            server.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print_line("stopped")
    return 0


# --- the client -----------------------------------------------------------------------------
def _split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"milagro connect: {text!r} is not HOST:PORT")
    return host, int(port)


def _describe_server(peer: dict) -> str:
    locator = peer["locator"]
    return (f"peer {peer['name']}: anchor {locator['txid']}:{locator['input']} at height {peer['height']}, "
            f"{peer['confirmations']} confirmations")


def _connect(args) -> int:
    from ..context import Context
    host, port = _split_address(args.address)
    try:
        with Context(identity=args.identity, trust=args.trust, **_context_options(args)) as context:
            raw = socket.create_connection((host, port), timeout=args.timeout)
            with context.wrap_socket(raw, server_hostname=args.server_name or host) as tls:
                name, version, _ = tls.cipher()
                print_line(f"connected to {describe_address((host, port))} with {name} ({version})")
                print_line(_describe_server(tls.getpeercert()))
                if args.send is not None:
                    print_line(f"echo: {_echo_once(tls, args.send.encode()).decode(errors='replace')}")
    except (ssl.SSLError, OSError, ValueError) as exc:
        if isinstance(exc, ssl.SSLError) and getattr(exc, "alert", None) is not None:
            message = describe_failure(exc)
        else:
            message = str(exc)
        print(f"{type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


def _echo_once(tls, payload: bytes) -> bytes:
    """Send ``payload`` and read until as many bytes came back (or the server closed)."""
    tls.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = tls.recv(65536)
        if not chunk:
            break
        received += chunk
    return received

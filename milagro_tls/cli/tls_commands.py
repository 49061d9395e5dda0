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
import contextlib
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from tlslite.constants import AlertDescription


#: How long a peer may take over a whole handshake, or leave us waiting for its next bytes
#: afterwards, before the server closes the connection. A handshake is two round trips and
#: needs no lookups (staples verify against local headers), so 30 s is generous even for a
#: slow mobile link; it bounds what a stalled or slow-loris peer holds: one thread, one fd.
DEFAULT_TIMEOUT = 30.0
#: One thread per connection: this bounds the threads (and fds) peers can make us hold.
#: nginx's default worker_connections is 512 per worker, Apache's MaxRequestWorkers 256;
#: 1024 keeps well under the usual 1024-soft/4096+-hard fd limits once doubled for logs.
DEFAULT_MAX_CONNECTIONS = 1024
#: After a fatal alert, keep reading (and discarding) for this long before closing: closing
#: with unread input makes the kernel send a TCP RST, which can destroy our alert before the
#: peer's application has read it. Apache's "lingering close" (2 s there), for the reason
#: RFC 9112 §9.6 gives for HTTP. Bounded in time and bytes: a peer cannot hold us with it.
LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024
#: How often the accept loop looks for a stop request (SIGINT/SIGTERM): the stop latency.
_ACCEPT_POLL = 0.25


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
def describe_established(conn) -> str:
    """``SUITE VERSION peer NAME``: the trust store's name for the peer, or anonymous."""
    name, version, _ = conn.cipher()
    peer = conn.getpeercert()
    if not peer:
        who = "anonymous"
    elif peer.get("authenticated"):
        who = peer["name"]
    elif "certificate" in peer:
        who = f"unauthenticated (its certificate says {peer['certificate']['name']!r})"
    else:
        who = f"X.509 {peer.get('subject')}"
    resumed = " (resumed)" if conn.session_reused else ""
    return f"{name} {version} peer {who}{resumed}"


def _alert(number: int) -> str:
    return f"{AlertDescription.toRepr(number) or 'alert'} ({number})"


def _peer_left(exc: ssl.SSLError) -> bool:
    """EOF (or close_notify) before the handshake ended: the engine reports it as a received
    close_notify; nobody refused anybody."""
    return getattr(exc, "alert_sent", True) is False and exc.alert == AlertDescription.close_notify


def describe_failure(exc: ssl.SSLError) -> str:
    """``sent alert NAME (N): reason`` or ``received alert NAME (N)``: the alert, and whose verdict."""
    alert = getattr(exc, "alert", None)
    if alert is None:
        return f"{type(exc).__name__}: {exc}"
    if exc.alert_sent:
        return f"sent alert {_alert(alert)}: {exc.error}"
    if _peer_left(exc):
        return f"{exc.error}"
    return f"received alert {_alert(alert)}"


def _where(address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_output_lock = threading.Lock()


def _print_line(line: str, stream=None) -> None:
    """One whole line: print() writes the text and its newline separately, so lines from
    connection threads printing at once would interleave."""
    stream = stream or sys.stdout
    with _output_lock:
        stream.write(line + "\n")
        stream.flush()


# --- the echo server ------------------------------------------------------------------------
class EchoServer:
    """Echo each accepted connection until EOF, each in its own thread under ``timeout``.

    ``report`` gets one line per connection: the suite and the verified peer, or the failure
    and its alert. A connection's failure never reaches the accept loop: the server keeps
    serving. ``stop()`` (any thread, or a signal handler) ends ``serve_forever`` within
    ``_ACCEPT_POLL`` seconds and closes the connections still open.
    """

    def __init__(self, context, host: str = "127.0.0.1", port: int = 0, *, timeout: float = DEFAULT_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 report: Callable[[str], None] = _print_line) -> None:
        if timeout <= 0 or max_connections < 1:
            raise ValueError("timeout and max_connections must be positive")
        self.timeout = timeout
        self.max_connections = max_connections
        self.report = report
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # A deep backlog: a burst of connects must not wait for SYN retransmits (1 s each).
        raw = socket.create_server((host, port), family=family, backlog=1024)
        # No handshake inside accept(): a peer that never speaks would stall the accept loop.
        self._listener = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        self._listener.settimeout(_ACCEPT_POLL)
        self.address = self._listener.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._open: set = set()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    @property
    def where(self) -> str:
        return _where(self.address)

    def serve_forever(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    conn, address = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if self._stopping.is_set():
                        break
                    # EMFILE and friends: say so, and do not spin on a listener that stays readable.
                    _print_line(f"accept failed: {type(exc).__name__}: {exc}", sys.stderr)
                    self._stopping.wait(_ACCEPT_POLL)
                    continue
                if not self._slots.acquire(blocking=False):
                    self.report(f"{_where(address)} closed: over the limit of {self.max_connections} connections")
                    conn.close()
                    continue
                thread = threading.Thread(target=self._serve_one, args=(conn, address), daemon=True,
                                          name=f"echo {_where(address)}")
                with self._lock:
                    self._threads.add(thread)
                try:
                    thread.start()
                except RuntimeError as exc:       # the process cannot make another thread
                    with self._lock:
                        self._threads.discard(thread)
                    self.report(f"{_where(address)} closed: {exc}")
                    conn.close()
                    self._slots.release()
        finally:
            self._listener.close()
            self._close_open_connections()

    def stop(self) -> None:
        self._stopping.set()

    def _close_open_connections(self) -> None:
        with self._lock:
            conns, threads = list(self._open), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)   # wakes the thread blocked on it
        deadline = time.monotonic() + 2.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _serve_one(self, conn, address) -> None:
        where = _where(address)
        with self._lock:
            self._open.add(conn)
        try:
            conn.settimeout(self.timeout)   # MilagroSocket: one deadline for the whole handshake
            try:
                conn.do_handshake()
            except ssl.SSLError as exc:
                if _peer_left(exc):
                    self.report(f"{where} closed before the handshake completed: {exc.error}")
                else:
                    self.report(f"{where} failed: {describe_failure(exc)}")
                    _linger(conn)
                return
            except TimeoutError:
                self.report(f"{where} closed: no complete handshake within {self.timeout:g} s")
                return
            except OSError as exc:
                self.report(f"{where} closed before the handshake completed: {exc.strerror or exc}")
                return
            self.report(f"{where} {describe_established(conn)}")
            self._echo(conn, where)
        except Exception as exc:       # our bug: log it, keep serving everyone else
            self.report(f"{where} failed: internal error {type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            with self._lock:
                self._open.discard(conn)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                conn.close()
            self._slots.release()

    def _echo(self, conn, where: str) -> None:
        """Until EOF. How an established connection ends goes to stderr: stdout keeps one
        line per connection."""
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except TimeoutError:
            ending = f"silent for {self.timeout:g} s: closed"
        except ssl.SSLError as exc:
            ending = f"failed: {describe_failure(exc)}"
        except OSError as exc:
            ending = f"{type(exc).__name__}: {exc.strerror or exc}"
        else:
            return
        if not self._stopping.is_set():
            _print_line(f"{where} {ending}", sys.stderr)


def _linger(conn) -> None:
    """Lingering close after our alert went out (see LINGER_SECONDS): FIN, then discard input.
    Raw TCP (the TLS connection is dead), waiting through the socket's timeout: poll() inside
    CPython, not select(), which cannot watch an fd above FD_SETSIZE (1024)."""
    try:
        socket.socket.shutdown(conn, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            conn.settimeout(remaining)
            chunk = socket.socket.recv(conn, 65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:          # TimeoutError included: the peer had its chance
        pass


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
            _print_line(f"listening on {server.where}")
            server.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    _print_line("stopped")
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
                _print_line(f"connected to {_where((host, port))} with {name} ({version})")
                _print_line(_describe_server(tls.getpeercert()))
                if args.send is not None:
                    _print_line(f"echo: {_echo_once(tls, args.send.encode()).decode(errors='replace')}")
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

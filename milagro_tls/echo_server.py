"""A threaded echo server over a milagro ``Context``: what ``milagro serve echo`` runs.

One thread per connection (the handshake runs there, never inside accept()), a bound on the
handshake and on each later wait, a connection cap, one output line per connection, and a
lingering close after an alert so that the peer reads it before the socket goes away.
"""
from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time
import traceback
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


def describe_address(address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_output_lock = threading.Lock()


def print_line(line: str, stream=None) -> None:
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
                 report: Callable[[str], None] = print_line) -> None:
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
        return describe_address(self.address)

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
                    print_line(f"accept failed: {type(exc).__name__}: {exc}", sys.stderr)
                    self._stopping.wait(_ACCEPT_POLL)
                    continue
                if not self._slots.acquire(blocking=False):
                    self.report(f"{describe_address(address)} closed: over the limit of {self.max_connections} connections")
                    conn.close()
                    continue
                thread = threading.Thread(target=self._serve_one, args=(conn, address), daemon=True,
                                          name=f"echo {describe_address(address)}")
                with self._lock:
                    self._threads.add(thread)
                try:
                    thread.start()
                except RuntimeError as exc:       # the process cannot make another thread
                    with self._lock:
                        self._threads.discard(thread)
                    self.report(f"{describe_address(address)} closed: {exc}")
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
        where = describe_address(address)
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
            print_line(f"{where} {ending}", sys.stderr)


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

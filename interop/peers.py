"""The peers, each started by the harness on 127.0.0.1 with an ephemeral port.

Every server speaks the protocol of ``openssl s_server -rev``, so one client check fits all of
them: each line the client sends comes back reversed, and a line starting with ``CLOSE``
ends the connection (the server closes with close_notify).
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field

#: What a client sends and what it must get back from any of our servers.
REQUEST = b"milagro interop ping\nCLOSE\n"
EXPECTED_REPLY = b"gnip poretni orgalim\n"
#: A peer that has not answered within this is broken; the whole harness targets ~30 s.
IO_TIMEOUT = 10.0


class MissingTool(RuntimeError):
    """A peer's binary is not installed: the harness fails (CI must install it), never skips."""


def openssl_binary() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise MissingTool("the `openssl` binary is not on PATH: install it (Debian: apt-get install -y openssl)")
    return path


def serve_rev_protocol(conn) -> bytes:
    """``s_server -rev``'s service on an established connection; returns what was received."""
    received, buffer = b"", b""
    while True:
        data = conn.recv(65536)
        if not data:
            return received
        received += data
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.startswith(b"CLOSE"):
                return received
            conn.sendall(line[::-1] + b"\n")


def read_until_eof(conn) -> bytes:
    reply = b""
    while data := conn.recv(65536):
        reply += data
    return reply


# --- the OpenSSL binary ----------------------------------------------------------------------------
@dataclass
class OpenSSLServer:
    port: int
    process: subprocess.Popen
    output: str = ""           # stdout + stderr, once it has exited

    def finish(self, timeout: float = IO_TIMEOUT) -> str:
        """Wait for ``-naccept 1`` to end the process (or end it), and keep everything it printed."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        self.output += out + err
        return self.output


@contextlib.contextmanager
def openssl_server(cert, key, *extra: str):
    """``openssl s_server -rev`` serving exactly one connection on an ephemeral port."""
    command = [openssl_binary(), "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev",
               "-cert", str(cert), "-key", str(key), *extra]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        banner = ""
        while True:       # "ACCEPT 127.0.0.1:PORT" carries the port the kernel chose
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"s_server exited before listening: {banner}{process.stderr.read()}")
            banner += line
            if line.startswith("ACCEPT"):
                break
    except BaseException:
        process.kill()
        process.communicate()
        raise
    server = OpenSSLServer(int(line.rsplit(":", 1)[1]), process, banner)
    try:
        yield server
    except BaseException:
        server.finish(timeout=1.0)      # the case failed, perhaps before connecting: don't wait long
        raise
    server.finish()


def openssl_client(port: int, *extra: str, request: bytes = REQUEST, brief: bool = True) -> subprocess.CompletedProcess:
    """``openssl s_client -ign_eof``: sends ``request``, prints the reply, exits at the server's close.
    ``brief`` (``-brief``) prints a short summary, but not the ALPN outcome."""
    command = [openssl_binary(), "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof",
               *(["-brief"] if brief else []), *extra]
    return subprocess.run(command, input=request, capture_output=True, timeout=IO_TIMEOUT)


# --- threaded servers: ours (milagro_tls.Context) and Python ssl ----------------------------------------
@dataclass
class Served:
    """What the server saw on one connection."""
    cipher: tuple | None = None
    version: str | None = None
    peer: dict | None = None
    received: bytes = b""
    error: BaseException | None = None


@dataclass
class ServerLog:
    port: int
    connections: list[Served] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def first(self) -> Served:
        """The first connection, once the server has finished with it."""
        if not self.done.wait(IO_TIMEOUT):
            raise TimeoutError("the server did not finish its connection")
        return self.connections[0]


@contextlib.contextmanager
def threaded_server(wrap):
    """Accept one connection on 127.0.0.1, ``wrap(plain_socket)`` it, handshake and serve -rev.

    ``wrap`` is a server context's ``wrap_socket`` with ``server_side=True``: for our Context
    that is the drop-in path (a MilagroSocket), for ``ssl.SSLContext`` an ``ssl.SSLSocket``."""
    listener = socket.create_server(("127.0.0.1", 0))
    log = ServerLog(listener.getsockname()[1])

    def serve():
        served = Served()
        log.connections.append(served)
        try:
            plain, _ = listener.accept()
            plain.settimeout(IO_TIMEOUT)
            with wrap(plain) as conn:
                conn.do_handshake()
                served.cipher, served.version, served.peer = conn.cipher(), conn.version(), conn.getpeercert()
                served.received = serve_rev_protocol(conn)
        except Exception as exc:       # the case inspects it: the server side of a refusal
            served.error = exc
        finally:
            log.done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield log
    finally:
        # A case that never connected (it failed first) must not wait: on Linux only shutdown()
        # wakes a thread blocked in accept(), close() does not. A connection in progress still
        # ends by its own timeout.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(IO_TIMEOUT)


def our_server(context):
    return threaded_server(lambda plain: context.wrap_socket(plain, server_side=True,
                                                             do_handshake_on_connect=False))


def python_ssl_server(cert, key, *, ciphers: str | None = None, alpn: list[str] | None = None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    if ciphers:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(alpn)
    return threaded_server(lambda plain: context.wrap_socket(plain, server_side=True,
                                                             do_handshake_on_connect=False))


def exchange(tls, request: bytes = REQUEST) -> bytes:
    """The client half of the -rev protocol over an established connection."""
    tls.sendall(request)
    return read_until_eof(tls)


def bulk_request(size: int) -> tuple[bytes, bytes]:
    """(request, expected reply) with one line of ``size`` bytes: many full-size records each way."""
    line = bytes(range(32, 127)) * (size // 95 + 1)
    line = line[:size]
    return line + b"\nCLOSE\n", line[::-1] + b"\n"


def connect(context, port: int, server_hostname: str):
    """A client connection through ``context.wrap_socket`` (the handshake runs on connect)."""
    plain = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        return context.wrap_socket(plain, server_hostname=server_hostname)
    except BaseException:
        plain.close()
        raise


def capture_client_hello(client_attempt) -> bytes:
    """The first bytes a client sends to a listener that never answers (then closes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    captured = []

    def accept():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(IO_TIMEOUT)
            data = b""
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            captured.append(data)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client_attempt(listener.getsockname()[1])
    except (OSError, ssl.SSLError):
        pass              # the listener hangs up without answering: expected
    thread.join(IO_TIMEOUT)
    listener.close()
    return captured[0] if captured else b""

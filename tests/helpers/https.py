"""HTTPS over the Context on loopback for tests: a threaded ``http.server`` whose listening
socket is wrapped (as a user of ``ssl`` writes it), and what each end of a connection reports.

HTTP clients use the URL's host as ``server_hostname``; ``echo.example`` does not resolve here,
so the client pins the echo server's anchor under the name ``localhost``, which the URL names.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import socketserver
import threading

from milagro_tls.adapters.sslsocket import MilagroSocket
from milagro_tls.context import Context
from milagro_tls.trust import TrustStore

SUITE_PREFIX = {"ecdh": "ECDH-BTC", "yak": "YAK-BTC"}


def client_context(world, suites: str | None = None) -> Context:
    """alice, pinning the echo server's anchor under the name the URLs use."""
    return Context(identity=world.identities["alice"], trust=TrustStore([world.entry("echo.example", as_name="localhost")]),
                   chain=world.source, headers=":memory:", suites=suites)


@contextlib.contextmanager
def serving(server: socketserver.BaseServer):
    """Run a socketserver in a thread; always shut it down. Yields its port."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wrap_listener(server: socketserver.TCPServer, context: Context, *, do_handshake_on_connect: bool = True) -> None:
    """What a user of http.server/socketserver writes to serve TLS, as with ssl. Without the
    handshake on connect, accept() returns at once and the handler's first read handshakes."""
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=do_handshake_on_connect)


def tls_view(sock) -> dict:
    """What one end of a wrapped connection reports, as JSON-able values."""
    assert isinstance(sock, MilagroSocket)
    peer = sock.getpeercert()
    return {"cipher": list(sock.cipher()), "version": sock.version(),
            "peer": peer and {"name": peer["name"], "locator": peer["locator"]}}


class ReportingHandler(http.server.BaseHTTPRequestHandler):
    """Answers each GET with the server end's view of the TLS connection."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"path": self.path, **tls_view(self.connection)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def https_server(context: Context) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ReportingHandler)
    wrap_listener(server, context)
    return server


def assert_server_view(view: dict, world, suites: str) -> None:
    assert view["cipher"][0].startswith(SUITE_PREFIX[suites]) and view["version"] == "TLSv1.2"
    assert view["peer"] == {"name": "alice", "locator": world.parties["alice"].locator.to_json()}


def assert_client_view(view: dict, world, suites: str) -> None:
    assert view["cipher"][0].startswith(SUITE_PREFIX[suites]) and view["version"] == "TLSv1.2"
    # The trust store's name for the anchor, never the name the certificate claims.
    assert view["peer"] == {"name": "localhost", "locator": world.parties["echo.example"].locator.to_json()}

"""The standard library's TLS users, unmodified, over the Context on 127.0.0.1:
``http.client.HTTPSConnection(context=ctx)`` and ``urllib.request.urlopen(url, context=ctx)``
against ``http.server`` whose listening socket is ``ctx.wrap_socket(listener, server_side=True)``
(so ``accept()`` hands out wrapped sockets); ``socketserver.ThreadingTCPServer`` the same way;
and ``wsgiref.simple_server``.

HTTP clients use the URL's host as ``server_hostname``; ``echo.example`` does not resolve here,
so the client pins the echo server's anchor under the name ``localhost``, which the URL names.
"""
from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import socketserver
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import pytest

from milagro_tls.adapters.sslsocket import MilagroSocket
from milagro_tls.context import Context
from milagro_tls.trust import TrustStore

from helpers.contexts import make_context

SUITE_PREFIX = {"ecdh": "ECDH-BTC", "yak": "YAK-BTC"}


@pytest.fixture(scope="module")
def server_context(world):
    context = make_context(world, identity="echo.example", trust=("alice",))
    yield context
    context.close()


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


def wrap_listener(server: socketserver.TCPServer, context: Context) -> None:
    """What a user of http.server/socketserver writes to serve TLS, as with ssl."""
    server.socket = context.wrap_socket(server.socket, server_side=True)


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


def test_wrapped_listener_accept_returns_wrapped_sockets(world, server_context):
    listener = server_context.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    with listener, client_context(world) as context:
        port = listener.getsockname()[1]
        box = {}
        accepting = threading.Thread(target=lambda: box.update(accepted=listener.accept()))
        accepting.start()
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"):
            accepting.join(5)
        accepted, address = box["accepted"]
        with accepted:
            assert isinstance(accepted, MilagroSocket) and accepted.server_side
            assert accepted.getpeercert()["name"] == "alice" and address[0] == "127.0.0.1"


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_http_client_https_connection_against_http_server(world, server_context, suites):
    with client_context(world, suites) as context, serving(https_server(server_context)) as port:
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
        try:
            for path in ("/one", "/two"):                 # two requests on one kept-alive connection
                connection.request("GET", path)
                response = connection.getresponse()
                assert response.status == 200
                server_view = json.loads(response.read())
                assert server_view["path"] == path
            client_view = tls_view(connection.sock)
        finally:
            connection.close()
    assert_server_view(server_view, world, suites)
    assert_client_view(client_view, world, suites)


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_urllib_urlopen_with_the_context(world, server_context, suites):
    with client_context(world, suites) as context, serving(https_server(server_context)) as port:
        with urllib.request.urlopen(f"https://localhost:{port}/via-urllib", context=context, timeout=5) as response:
            client_view = tls_view(response.fp.raw._sock)        # the socket http.client read from
            server_view = json.loads(response.read())
    assert server_view["path"] == "/via-urllib"
    assert_server_view(server_view, world, suites)
    assert_client_view(client_view, world, suites)


class ReportingEcho(socketserver.StreamRequestHandler):
    """One line in, the server's view of the connection and the line back out."""

    def handle(self):
        line = self.rfile.readline()
        self.wfile.write(json.dumps({"line": line.decode(), **tls_view(self.connection)}).encode() + b"\n")


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_socketserver_threading_tcp_server_with_wrapped_listener(world, server_context, suites):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), ReportingEcho)
    wrap_listener(server, server_context)
    with client_context(world, suites) as context, serving(server) as port:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as tls, tls.makefile("rwb") as stream:
            stream.write(b"hello over socketserver\n")
            stream.flush()
            server_view = json.loads(stream.readline())
            client_view = tls_view(tls)
    assert server_view["line"] == "hello over socketserver\n"
    assert_server_view(server_view, world, suites)
    assert_client_view(client_view, world, suites)


class TLSEnvironHandler(WSGIRequestHandler):
    """The application's way to see the TLS peer: wsgiref has no such key, so the handler adds
    one (as a deployment would); the server itself is unmodified."""

    def get_environ(self):
        environ = super().get_environ()
        environ["milagro.tls"] = tls_view(self.connection)
        return environ

    def log_message(self, format, *args):
        pass


def wsgi_app(environ, start_response):
    body = json.dumps({"path": environ["PATH_INFO"], **environ["milagro.tls"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_wsgiref_simple_server(world, server_context, suites):
    from wsgiref.simple_server import make_server
    server = make_server("127.0.0.1", 0, wsgi_app, server_class=WSGIServer, handler_class=TLSEnvironHandler)
    wrap_listener(server, server_context)
    with client_context(world, suites) as context, serving(server) as port:
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
        try:
            connection.request("GET", "/wsgi")
            response = connection.getresponse()        # HTTP/1.0: the response now owns the socket
            assert response.status == 200
            client_view = tls_view(response.fp.raw._sock)
            server_view = json.loads(response.read())
        finally:
            connection.close()
    assert server_view["path"] == "/wsgi"
    assert_server_view(server_view, world, suites)
    assert_client_view(client_view, world, suites)

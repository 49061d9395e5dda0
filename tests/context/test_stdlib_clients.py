"""The standard library's TLS users, unmodified, over the Context on 127.0.0.1:
``http.client.HTTPSConnection(context=ctx)`` and ``urllib.request.urlopen(url, context=ctx)``
against ``http.server`` whose listening socket is ``ctx.wrap_socket(listener, server_side=True)``
(so ``accept()`` hands out wrapped sockets); ``socketserver.ThreadingTCPServer`` the same way;
and ``wsgiref.simple_server``.
See helpers/https.py for the server and why the client pins the server as ``localhost``.
"""
from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import pytest

from milagro_tls.adapters.sslsocket import MilagroSocket

from helpers.contexts import make_context
from helpers.https import (assert_client_view, assert_server_view, client_context, https_server, serving,
                           tls_view, wrap_listener)


@pytest.fixture(scope="module")
def server_context(world):
    context = make_context(world, identity="echo.example", trust=("alice",))
    yield context
    context.close()


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


@pytest.mark.parametrize("handshake_in_accept", [True, False], ids=["handshake-in-accept", "handshake-in-handler"])
@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_socketserver_threading_tcp_server_with_wrapped_listener(world, server_context, suites, handshake_in_accept):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), ReportingEcho)
    wrap_listener(server, server_context, do_handshake_on_connect=handshake_in_accept)
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

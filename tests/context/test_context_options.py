"""Context options in the orders real servers use them (found by the interop harness)."""
from __future__ import annotations

import socket
import ssl


from milagro_tls.context import Context

from helpers.contexts import echo_server, make_context
from helpers.pki import make_ca_and_leaf


def test_constructor_accepts_a_fallback_certificate(world, tmp_path):
    _, cert, key = make_ca_and_leaf(tmp_path)
    # headers= and no chain: no header-sync thread to leak when the constructor raises.
    context = Context(identity=world.identities["echo.example"], headers=world.headers(),
                      fallback_certificate=(str(cert), str(key)))
    assert context.config.identity is world.identities["echo.example"]
    context.close()


def test_fallback_negotiates_alpn_set_after_the_certificate(world, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path)
    server = make_context(world, identity="echo.example")
    server.load_cert_chain(str(cert), str(key))           # the order hypercorn and most servers use
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.create_default_context(cafile=str(ca))
    client.set_alpn_protocols(["http/1.1"])
    with server, echo_server(server) as (port, errors):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as tls:
            tls.sendall(b"ping")
            assert tls.recv(10) == b"ping"
            assert tls.selected_alpn_protocol() == "http/1.1"

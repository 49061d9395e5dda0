"""Defects the interop harness ran into in milagro_tls.Context, pinned until they are fixed.

Both are strict xfails: the day the Context is fixed they XPASS and fail, so whoever fixes it
removes the marker (and the workaround in interop/world.py and interop/cases/openssl_peers.py).
"""
from __future__ import annotations

import socket
import ssl

import pytest

from milagro_tls.context import Context

from helpers.contexts import echo_server, make_context
from helpers.pki import make_ca_and_leaf


@pytest.mark.xfail(strict=True, raises=AttributeError,
                   reason="Context.__init__ calls load_cert_chain() before it sets self._alpn "
                          "(context.py: fallback_certificate handled above `self._alpn = ()`)")
def test_constructor_accepts_a_fallback_certificate(world, tmp_path):
    _, cert, key = make_ca_and_leaf(tmp_path)
    # headers= and no chain: no header-sync thread to leak when the constructor raises.
    context = Context(identity=world.identities["echo.example"], headers=world.headers(),
                      fallback_certificate=(str(cert), str(key)))
    context.close()


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="set_alpn_protocols() does not reach a fallback context loaded before it: "
                          "load_cert_chain() copies the protocols once, and only if already set")
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

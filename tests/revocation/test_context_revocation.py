"""Revocation through the Context over real sockets: on by default with a source, the revoked
server refused with certificate_revoked (44) while the next server is served; a hung source
delays the handshake by the timeout only, then refuses (fail closed)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.context import Context
from milagro_tls.identity.revoke import revoke_party

from helpers.contexts import echo_server, make_context
from helpers.sources import DelegatingSource

CERTIFICATE_REVOKED = 44
BAD_CERTIFICATE = 42


class HungOutspends(DelegatingSource):
    """Answers everything but outspends, which hang until released (a stuck Esplora)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.released = threading.Event()

    def outspend_unverified(self, txid, vout):
        self.released.wait(30)
        return self.inner.outspend_unverified(txid, vout)


def _talk(context, port: int, name: str) -> bytes:
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=name) as tls:
        tls.sendall(b"ping")
        return tls.recv(4)


def test_revoked_server_is_refused_and_the_next_one_served(own_world):
    world = own_world
    servers = {name: make_context(world, identity=name) for name in ("server.example", "other.example")}
    client = make_context(world, trust=("server.example", "other.example"))
    assert client.config.revocation_check is not None          # on by default with a source
    with client, servers["server.example"] as revoked, servers["other.example"] as fine, \
            echo_server(revoked) as (revoked_port, _), echo_server(fine) as (fine_port, _):
        assert _talk(client, revoked_port, "server.example") == b"ping"
        revoke_party(world.home, "server.example", world.source)
        with pytest.raises(MilagroSSLError) as refused:
            _talk(client, revoked_port, "server.example")
        assert refused.value.alert == CERTIFICATE_REVOKED and refused.value.alert_sent
        assert _talk(client, fine_port, "other.example") == b"ping"
        # check_revocation=False: the verifier cannot know, and accepts the revoked server.
        blind = make_context(world, trust=("server.example",), check_revocation=False)
        with blind:
            assert blind.config.revocation_check is None
            assert _talk(blind, revoked_port, "server.example") == b"ping"


def test_a_hung_source_costs_the_timeout_then_refuses(own_world):
    world = own_world
    source = HungOutspends(world.source)
    server = make_context(world, identity="other.example")
    client = Context(trust=world.trust("other.example"), chain=source, headers=":memory:", revocation_timeout=0.5)
    try:
        with server, echo_server(server) as (port, _):
            started = time.monotonic()
            with pytest.raises(MilagroSSLError) as refused:
                _talk(client, port, "other.example")
            waited = time.monotonic() - started
            assert refused.value.alert == BAD_CERTIFICATE and refused.value.alert_sent
            assert 0.5 <= waited < 3.0
            source.released.set()
            assert _talk(client, port, "other.example") == b"ping"
    finally:
        source.released.set()
        client.close()

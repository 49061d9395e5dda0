"""Session resumption through the socket API, as with ssl: ``tls.session`` from one connection
passed to ``ctx.wrap_socket(..., session=...)`` resumes it (``session_reused``), and neither
end consults its header chain on the resumed handshake.
"""
from __future__ import annotations

import socket

import pytest

from milagro_tls.adapters.errors import MilagroPeerVerificationError
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.context import Context

from helpers.contexts import echo_server

SUITE_PREFIX = {"ecdh": "ECDH-BTC", "yak": "YAK-BTC"}


class CountingHeaderChain(HeaderChain):
    """A real header chain that counts the reads the anchor verifier makes of it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0

    def tip(self):
        self.reads += 1
        return super().tip()

    def height_of(self, block_hash):
        self.reads += 1
        return super().height_of(block_hash)

    def header_by_hash(self, block_hash):
        self.reads += 1
        return super().header_by_hash(block_hash)


def counting_context(world, *, identity: str | None, trust: tuple[str, ...], **options) -> Context:
    headers = CountingHeaderChain(":memory:", world.source.network)
    # A long sync interval: the background sync must not read the chain while we count.
    return Context(identity=world.identities[identity] if identity else None, trust=world.trust(*trust),
                   chain=world.source, headers=headers, sync_interval=3600, **options)


def _exchange(tls, payload: bytes) -> None:
    tls.sendall(payload)
    assert tls.recv(100) == payload


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_session_from_one_connection_resumes_the_next_without_chain_reads(world, suites):
    server = counting_context(world, identity="echo.example", trust=("alice",))
    client = counting_context(world, identity="alice", trust=("echo.example",), suites=suites)
    with server, client, echo_server(server) as (port, errors):
        server.headers.reads = client.headers.reads = 0
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="echo.example") as first:
            _exchange(first, b"first")
            session, first_cipher = first.session, first.cipher()
            assert session is not None and not first.session_reused
            full = (client.headers.reads, server.headers.reads)

        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="echo.example", session=session) as second:
            _exchange(second, b"second")
            assert second.session_reused and second.session is session
            assert second.cipher() == first_cipher and second.cipher()[0].startswith(SUITE_PREFIX[suites])
            peer = second.getpeercert()
        resumed = (client.headers.reads - full[0], server.headers.reads - full[1])
    assert errors == []
    assert full[0] > 0 and full[1] > 0          # the full handshake verified a staple each way
    assert resumed == (0, 0)                    # the resumed one read no header at either end
    assert peer["name"] == "echo.example"
    assert peer["locator"] == world.parties["echo.example"].locator.to_json()


def test_a_session_offered_under_another_name_is_refused(world):
    """The resumed peer is re-checked against today's trust store for the name asked for: a
    session made with echo.example does not vouch for idp.example."""
    server = counting_context(world, identity="echo.example", trust=())
    client = counting_context(world, identity=None, trust=("echo.example", "idp.example"))
    with server, client, echo_server(server) as (port, errors):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="echo.example") as first:
            _exchange(first, b"x")
            session = first.session
        with pytest.raises(MilagroPeerVerificationError) as refused:
            client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                               server_hostname="idp.example", session=session)
    assert refused.value.alert == 42 and refused.value.alert_sent
    assert [(e.alert, e.alert_sent) for e in errors] == [(42, False)]

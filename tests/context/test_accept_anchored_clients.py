"""``Context(accept_anchored_clients=True)``: a server that lets any anchored client connect and
identifies it by the locator the handshake verified (a D-TA binds logins to it), while the
servers the same Context connects to are still authenticated by pinning."""
from __future__ import annotations

import json
import logging
import socket

import pytest

from milagro_tls.adapters.errors import MilagroPeerVerificationError, MilagroSSLError

from helpers.contexts import echo_server, make_context


def report_peer(conn) -> None:
    conn.sendall(json.dumps(conn.getpeercert()).encode())


@pytest.mark.parametrize("suites", ["yak", "ecdh"])
def test_an_unpinned_anchored_client_is_accepted_and_known_by_its_verified_locator(world, suites, caplog):
    server = make_context(world, identity="echo.example", trust=(), accept_anchored_clients=True)
    client = make_context(world, identity="alice", trust=("echo.example",), suites=suites)
    with caplog.at_level(logging.INFO), server, client, echo_server(server, handler=report_peer) as (port, errors):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example") as tls:
            seen = json.loads(tls.recv(65536))
    assert not errors
    assert seen["locator"] == world.parties["alice"].locator.to_json()
    assert seen["name"] is None and seen["authenticated"] is False and seen["roles"] == []
    # Expected for such a server: INFO, not the loud warning of accept_any_anchored_peer_unauthenticated.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "UNAUTHENTICATED" in r.getMessage()]
    assert any("identified by its verified anchor" in r.getMessage() for r in caplog.records)


def test_a_pinned_client_keeps_its_name(world):
    server = make_context(world, identity="echo.example", trust=("alice",), accept_anchored_clients=True)
    client = make_context(world, identity="alice", trust=("echo.example",))
    with server, client, echo_server(server, handler=report_peer) as (port, errors):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example") as tls:
            seen = json.loads(tls.recv(65536))
    assert seen["name"] == "alice" and seen["authenticated"] is True


def test_without_the_option_an_unpinned_client_is_refused(world):
    server = make_context(world, identity="echo.example", trust=())
    client = make_context(world, identity="alice", trust=("echo.example",))
    with server, client, echo_server(server, handler=report_peer) as (port, errors):
        with pytest.raises(MilagroSSLError) as refused:
            tls = client.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
            tls.recv(10)
        assert refused.value.alert == 42
    assert any(isinstance(e, MilagroSSLError) and e.alert == 42 for e in errors)


def test_the_option_never_accepts_an_unpinned_server(world):
    """The same Context used as a client: a server it has not pinned is refused as before."""
    server = make_context(world, identity="echo.example", trust=(), accept_anchored_clients=True)
    both_ways = make_context(world, identity="alice", trust=("idp.example",), accept_anchored_clients=True)
    with server, both_ways, echo_server(server) as (port, _):
        with pytest.raises(MilagroPeerVerificationError) as refused:
            both_ways.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
        assert refused.value.alert == 42 and refused.value.alert_sent

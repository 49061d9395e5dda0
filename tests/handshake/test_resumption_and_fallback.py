"""Resumption by session ID (no chain lookups, bounded lifetime) and the server's fallback to
Python ssl for clients that offer none of our suites."""
from __future__ import annotations

import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from milagro_tls.ciphersuites.registry import select_suites
from milagro_tls.handshake import Connection, Role
from milagro_tls.handshake import NEED_DATA, ApplicationData, ConnectionClosed, ConnectionFailed, HandshakeComplete
from milagro_tls.handshake.session import SessionCache

from helpers.handshake import config, connect, pump
from helpers.tls_records import alert_record
from helpers.pki import make_ca_and_leaf


class CountingHeaders:
    """The verifier's view of a header chain, counting how often the handshake consults it."""

    def __init__(self, inner):
        self.inner, self.network, self.calls = inner, inner.network, 0

    def tip(self):
        self.calls += 1
        return self.inner.tip()

    def height_of(self, block_hash):
        self.calls += 1
        return self.inner.height_of(block_hash)

    def header_by_hash(self, block_hash):
        self.calls += 1
        return self.inner.header_by_hash(block_hash)


@pytest.mark.parametrize("kind", ["ecdh", "yak"])
def test_a_session_resumes_without_touching_the_chain(world, kind):
    client_headers, server_headers = CountingHeaders(world.headers()), CountingHeaders(world.headers())
    cache = SessionCache()
    client_config = config(world, identity="alice", trust=world.trust("echo.example"),
                           suites=select_suites(kind)[:1], headers=client_headers)
    server_config = config(world, identity="echo.example", trust=world.trust("alice"), headers=server_headers,
                           session_cache=cache)
    first, server, events, _ = connect(client_config, server_config, server_hostname="echo.example")
    assert not events[0].session_reused and first.session is not None and len(cache) == 1
    calls = client_headers.calls, server_headers.calls

    client = Connection(Role.CLIENT, client_config, server_hostname="echo.example", session=first.session)
    server = Connection(Role.SERVER, server_config)
    client.start()
    client_events, server_events = pump(client, server)
    assert client_events[0].session_reused and server_events[0].session_reused
    assert client_events[0].peer.name == "echo.example" and server_events[0].peer.name == "alice"
    assert (client_headers.calls, server_headers.calls) == calls          # no chain lookups at all
    assert client.master_secret == first.master_secret
    client.send_data(b"resumed")
    _, server_events = pump(client, server)
    assert server_events == [ApplicationData(b"resumed")]


def test_an_expired_session_gets_a_full_handshake(world):
    cache = SessionCache(lifetime=0.05)
    client_config = config(world, identity=None, trust=world.trust("echo.example"))
    server_config = config(world, identity="echo.example", trust=world.trust(), session_cache=cache)
    first, _, _, _ = connect(client_config, server_config)
    time.sleep(0.1)
    client = Connection(Role.CLIENT, client_config, session=first.session)
    server = Connection(Role.SERVER, server_config)
    client.start()
    client_events, _ = pump(client, server)
    assert isinstance(client_events[0], HandshakeComplete) and not client_events[0].session_reused


def test_a_session_is_not_resumed_for_another_server_name(world):
    cache = SessionCache()
    trust = world.trust("echo.example", "idp.example")
    client_config = config(world, identity=None, trust=trust)
    server_config = config(world, identity="echo.example", trust=world.trust(), session_cache=cache)
    first, _, _, _ = connect(client_config, server_config, server_hostname="echo.example")
    client = Connection(Role.CLIENT, client_config, server_hostname="idp.example", session=first.session)
    server = Connection(Role.SERVER, server_config)
    client.start()
    client_events, _ = pump(client, server)
    failure, = client_events
    assert isinstance(failure, ConnectionFailed) and failure.error.alert == 42   # bad_certificate


def _feed(connection, data: bytes, events: list) -> bool:
    """Give ``connection`` the peer's bytes and collect its events; True once it has ended."""
    if data:
        connection.receive_data(data)
    while (event := connection.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, (ConnectionFailed, ConnectionClosed)):
            return True
    return False


def _python_ssl_client(ca_path, hostname="localhost"):
    context = ssl.create_default_context(cafile=str(ca_path))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(incoming, outgoing, server_hostname=hostname), incoming, outgoing


def _fallback_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _drive_python_client(sslobj, incoming, outgoing, server, payload=b"GET / HTTP/1.0\r\n\r\n"):
    events, sent = [], False
    for _ in range(10):
        try:
            sslobj.do_handshake()
            if not sent:
                sslobj.write(payload)
                sent = True
        except ssl.SSLWantReadError:
            pass
        _feed(server, outgoing.read(), events)
        incoming.write(server.data_to_send())
    return events


def test_server_serves_standard_clients_through_python_ssl_when_it_has_a_fallback_certificate(world, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path)
    server_config = config(world, identity="echo.example", trust=world.trust(),
                           fallback_context=_fallback_context(cert, key))
    server = Connection(Role.SERVER, server_config)
    sslobj, incoming, outgoing = _python_ssl_client(ca)
    events = _drive_python_client(sslobj, incoming, outgoing, server)
    complete, data = events[:2]
    assert isinstance(complete, HandshakeComplete) and complete.suite is None and complete.peer is None
    assert complete.standard_cipher[0].startswith(("ECDHE", "TLS_"))
    assert data == ApplicationData(b"GET / HTTP/1.0\r\n\r\n")
    server.send_data(b"HTTP/1.0 200 OK\r\n\r\n")
    incoming.write(server.data_to_send())
    assert sslobj.read(100) == b"HTTP/1.0 200 OK\r\n\r\n"


def test_without_a_fallback_certificate_a_standard_client_gets_handshake_failure(world, tmp_path):
    ca, _, _ = make_ca_and_leaf(tmp_path)
    server = Connection(Role.SERVER, config(world, identity="echo.example", trust=world.trust()))
    sslobj, incoming, outgoing = _python_ssl_client(ca)
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    server.receive_data(outgoing.read())
    event = server.next_event()
    assert isinstance(event, ConnectionFailed) and event.error.alert == 40
    alert = server.data_to_send()
    assert alert == alert_record(40)
    incoming.write(alert)
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        sslobj.do_handshake()


def test_fallback_is_never_used_when_client_identities_are_required(world, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path)
    server_config = config(world, identity="echo.example", trust=world.trust(), require_client_identity=True,
                           fallback_context=_fallback_context(cert, key))
    server = Connection(Role.SERVER, server_config)
    sslobj, incoming, outgoing = _python_ssl_client(ca)
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    server.receive_data(outgoing.read())
    event = server.next_event()
    assert isinstance(event, ConnectionFailed) and event.error.alert == 40


def test_our_client_still_gets_a_bitcoin_suite_from_a_server_with_a_fallback(world, tmp_path):
    _, cert, key = make_ca_and_leaf(tmp_path)
    client = config(world, identity=None, trust=world.trust("echo.example"))
    server = config(world, identity="echo.example", trust=world.trust(), fallback_context=_fallback_context(cert, key))
    _, _, client_events, server_events = connect(client, server)
    assert client_events[0].suite is not None and server_events[0].suite is client_events[0].suite


def _python_ssl_server(cert, key):
    context = _fallback_context(cert, key)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing


def _drive_against_python_server(client, sslobj, incoming, outgoing):
    events = []
    client.start()
    for _ in range(10):
        incoming.write(client.data_to_send())
        try:
            sslobj.do_handshake()
        except ssl.SSLError:            # SSLWantReadError, or OpenSSL refusing us: its alert follows
            pass
        if _feed(client, outgoing.read(), events):
            return events
    return events


def test_client_falls_back_to_an_x509_server_when_asked_and_verifies_it(world, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path)
    anchor = x509.load_pem_x509_certificate(ca.read_bytes()).public_bytes(Encoding.DER)
    client_config = config(world, identity=None, trust=world.trust(), fallback_trust_anchors=(anchor,))
    client = Connection(Role.CLIENT, client_config, server_hostname="localhost")
    sslobj, incoming, outgoing = _python_ssl_server(cert, key)
    events = _drive_against_python_server(client, sslobj, incoming, outgoing)
    complete, = events
    assert isinstance(complete, HandshakeComplete) and complete.peer is None
    assert complete.standard_cipher[0].startswith("ECDHE-") and complete.standard_cipher[1] == "TLSv1.2"
    assert client.peer_x509.subject.rfc4514_string().endswith("leaf")
    client.send_data(b"over standard suites")
    incoming.write(client.data_to_send())
    assert sslobj.read(100) == b"over standard suites"


def test_client_refuses_an_x509_server_its_anchors_do_not_vouch_for(world, tmp_path):
    _, cert, key = make_ca_and_leaf(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_ca_and_leaf(tmp_path / "other")
    anchor = x509.load_pem_x509_certificate(other_ca.read_bytes()).public_bytes(Encoding.DER)
    client = Connection(Role.CLIENT, config(world, identity=None, trust=world.trust(), fallback_trust_anchors=(anchor,)),
                        server_hostname="localhost")
    events = _drive_against_python_server(client, *_python_ssl_server(cert, key))
    failure, = events
    assert isinstance(failure, ConnectionFailed) and failure.error.alert == 42


def test_without_fallback_our_client_gets_handshake_failure_from_openssl(world, tmp_path):
    _, cert, key = make_ca_and_leaf(tmp_path)
    client = Connection(Role.CLIENT, config(world, identity=None, trust=world.trust()), server_hostname="localhost")
    events = _drive_against_python_server(client, *_python_ssl_server(cert, key))
    failure, = events
    assert isinstance(failure, ConnectionFailed) and not failure.alert_sent
    assert failure.error.alert == 40

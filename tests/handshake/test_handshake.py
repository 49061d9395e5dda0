"""Both suites, all three AEADs, full and server-only mode, between two sans-IO connections
whose identities are anchors mined on the embedded chain."""
from __future__ import annotations

import pytest
from tlslite.constants import AlertDescription

from milagro_tls.ciphersuites.registry import SUITES, KeyExchangeKind, select_suites
from milagro_tls.handshake import (NEED_DATA, ApplicationData, ConnectionClosed, ConnectionDead,
                                   ConnectionFailed, HandshakeComplete, LocalProtocolError, Role, State)
from milagro_tls.handshake.connection import Connection
from milagro_tls.handshake.messages import LOCATOR_EXTENSION

from helpers.handshake import config, connect, pump, replace
from helpers.tls_records import HANDSHAKE, alert_record, records

SUITE_IDS = [s.name for s in SUITES.values()]


def _configs(world, suite, *, anonymous: bool):
    client = config(world, identity=None if anonymous else "alice", trust=world.trust("echo.example"),
                    suites=(suite,))
    server = config(world, identity="echo.example", trust=world.trust("alice"))
    return client, server


@pytest.mark.parametrize("anonymous", [False, True], ids=["full", "server-only"])
@pytest.mark.parametrize("suite", SUITES.values(), ids=SUITE_IDS)
def test_both_sides_agree_and_exchange_data(world, suite, anonymous):
    client, server, client_events, server_events = connect(*_configs(world, suite, anonymous=anonymous),
                                                           server_hostname="echo.example")
    assert [type(e) for e in client_events] == [HandshakeComplete]
    assert [type(e) for e in server_events] == [HandshakeComplete]
    assert client_events[0].suite is suite and server_events[0].suite is suite
    assert client.master_secret == server.master_secret and len(client.master_secret) == 48
    # The client authenticated the server under its trust-store name, from the chain.
    server_peer = client_events[0].peer
    assert server_peer.authenticated and server_peer.name == "echo.example"
    assert server_peer.identity.locator == world.parties["echo.example"].locator
    assert server_peer.identity.nonce_point == world.identities["echo.example"].nonce_point
    client_peer = server_events[0].peer
    if anonymous:
        assert client_peer is None
    else:
        assert client_peer.name == "alice" and client_peer.identity.certificate.role == "pat"

    client.send_data(b"ping")
    server.send_data(b"pong" * 10000)       # more than one record
    client_events, server_events = pump(client, server)
    assert server_events == [ApplicationData(b"ping")]
    assert b"".join(e.data for e in client_events) == b"pong" * 10000


def test_client_always_sends_the_locator_extension_empty_when_anonymous(world):
    suite = select_suites("yak")[0]
    for anonymous, expected in ((True, b""), (False, world.parties["alice"].locator.encode())):
        client = Connection(Role.CLIENT, _configs(world, suite, anonymous=anonymous)[0])
        client.start()
        (content_type, hello), = records(client.data_to_send())
        assert content_type == HANDSHAKE
        marker = LOCATOR_EXTENSION.to_bytes(2, "big") + len(expected).to_bytes(2, "big") + expected
        assert marker in hello


def test_server_hello_names_the_server_locator(world):
    suite = select_suites("ecdh")[0]
    client = Connection(Role.CLIENT, _configs(world, suite, anonymous=True)[0])
    server = Connection(Role.SERVER, _configs(world, suite, anonymous=True)[1])
    client.start()
    server.receive_data(client.data_to_send())
    assert server.next_event() is NEED_DATA
    flight = b"".join(payload for _, payload in records(server.data_to_send()))
    locator = world.parties["echo.example"].locator.encode()
    assert LOCATOR_EXTENSION.to_bytes(2, "big") + len(locator).to_bytes(2, "big") + locator in flight


def test_server_prefers_its_own_order(world):
    client = config(world, identity="alice", trust=world.trust("echo.example"),
                    suites=tuple(reversed(tuple(SUITES.values()))))
    server = config(world, identity="echo.example", trust=world.trust("alice"))
    _, _, client_events, _ = connect(client, server)
    assert client_events[0].suite.key_exchange is KeyExchangeKind.YAK_BTC


def test_ecdh_and_yak_give_different_secrets_for_the_same_parties(world):
    secrets = {}
    for kind in ("ecdh", "yak"):
        client, server = _configs(world, select_suites(kind)[0], anonymous=False)
        c, s, _, _ = connect(client, server, server_hostname="echo.example")
        secrets[kind] = c.master_secret
    assert secrets["ecdh"] != secrets["yak"]


def test_alpn_is_negotiated_in_server_order(world):
    client, server = _configs(world, select_suites("yak")[0], anonymous=True)
    client = replace(client, alpn_protocols=("http/1.1", "h2"))
    server = replace(server, alpn_protocols=("h2", "http/1.1"))
    c, s, client_events, server_events = connect(client, server)
    assert client_events[0].alpn_protocol == server_events[0].alpn_protocol == "h2"
    assert c.alpn_protocol == "h2"


def test_close_notify_is_a_clean_close_and_eof_is_not(world):
    c, s, _, _ = connect(*_configs(world, select_suites("yak")[0], anonymous=True))
    c.close()
    _, server_events = pump(c, s)
    assert server_events == [ConnectionClosed(clean=True)]
    with pytest.raises(LocalProtocolError):
        c.send_data(b"late")

    c, s, _, _ = connect(*_configs(world, select_suites("yak")[0], anonymous=True))
    s.receive_data(b"")
    assert s.next_event() == ConnectionClosed(clean=False)


def test_data_before_the_handshake_is_a_local_error(world):
    client = Connection(Role.CLIENT, _configs(world, select_suites("yak")[0], anonymous=True)[0])
    with pytest.raises(LocalProtocolError):
        client.send_data(b"too early")


def test_eof_during_the_handshake_fails_without_an_alert(world):
    client, server = _configs(world, select_suites("yak")[0], anonymous=True)
    c = Connection(Role.CLIENT, client)
    c.start()
    c.data_to_send()
    c.receive_data(b"")
    event = c.next_event()
    assert isinstance(event, ConnectionFailed) and not event.alert_sent
    assert c.data_to_send() == b""
    with pytest.raises(ConnectionDead):
        c.next_event()


def test_renegotiation_is_refused_with_a_warning_and_the_connection_lives_on(world):
    c, s, _, _ = connect(*_configs(world, select_suites("yak")[0], anonymous=True))
    # A second ClientHello inside the established connection, encrypted as it must be.
    hello = Connection(Role.CLIENT, _configs(world, select_suites("yak")[0], anonymous=True)[0])
    hello.start()
    (_, body), = records(hello.data_to_send())
    c._outgoing += c._records.encode(HANDSHAKE, body)
    client_events, server_events = pump(c, s)
    assert server_events == []
    assert s.state is State.ESTABLISHED
    c.send_data(b"still here")
    _, server_events = pump(c, s)
    assert server_events == [ApplicationData(b"still here")]


def test_peer_fatal_alert_is_reported_and_ends_the_connection(world):
    client, _ = _configs(world, select_suites("yak")[0], anonymous=True)
    c = Connection(Role.CLIENT, client)
    c.start()
    c.receive_data(alert_record(AlertDescription.handshake_failure))
    event = c.next_event()
    assert isinstance(event, ConnectionFailed) and not event.alert_sent
    assert event.error.alert == AlertDescription.handshake_failure
    with pytest.raises(ConnectionDead):
        c.receive_data(b"more")


def test_staple_for_a_block_we_do_not_know_yet_fails_cleanly_then_succeeds_after_sync(world):
    from milagro_tls.handshake.errors import AnchorNotYetVerifiable
    from milagro_tls.identity.local import LocalIdentity
    from milagro_tls.identity.party import Party

    client_headers = world.headers()                 # synced before the server's anchor exists
    late = Party.create(world.home, world.source, role="service", name="late.example")
    world.parties["late.example"] = late
    world.identities["late.example"] = LocalIdentity.from_party(late, world.source)
    client = config(world, identity=None, trust=world.trust("late.example"), headers=client_headers)
    server = config(world, identity="late.example", trust=world.trust())

    c, _, client_events, _ = connect(client, server, server_hostname="late.example")
    failure, = client_events
    assert isinstance(failure, ConnectionFailed) and failure.alert_sent
    assert failure.error.alert == AlertDescription.certificate_unknown
    assert isinstance(failure.error, AnchorNotYetVerifiable)
    assert failure.error.block_hash == late.locator.block_hash    # what to sync for

    client_headers.sync_from(world.source)
    _, _, client_events, _ = connect(client, server, server_hostname="late.example")
    assert [type(e) for e in client_events] == [HandshakeComplete]
    assert client_events[0].peer.name == "late.example"


def test_accept_any_anchored_peer_is_reported_unauthenticated(world, caplog):
    client = config(world, identity=None, trust=world.trust(), accept_any_anchored_peer_unauthenticated=True)
    server = config(world, identity="mallory.example", trust=world.trust())
    _, _, client_events, _ = connect(client, server, server_hostname="mallory.example")
    peer = client_events[0].peer
    assert not peer.authenticated and peer.name is None
    assert peer.identity.certificate.name == "mallory.example"     # self-asserted, and only that
    assert "unauthenticated" in caplog.text.lower() or "not pinned" in caplog.text.lower()


def test_pinned_server_is_found_without_a_hostname(world):
    client = config(world, identity=None, trust=world.trust("idp.example", "echo.example"))
    server = config(world, identity="echo.example", trust=world.trust())
    _, _, client_events, _ = connect(client, server)
    assert client_events[0].peer.name == "echo.example"


def test_server_allows_a_client_role_on_its_list(world):
    client = config(world, identity="alice", trust=world.trust("echo.example"))
    server = config(world, identity="echo.example", trust=world.trust("alice"),
                    require_client_identity=True, allowed_client_roles=frozenset({"pat"}))
    _, _, _, server_events = connect(client, server)
    assert server_events[0].peer.name == "alice"

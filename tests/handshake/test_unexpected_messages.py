"""Messages that only the X.509 fallback path may carry are refused from their header alone."""
from __future__ import annotations

from tlslite.constants import HandshakeType

from milagro_tls.ciphersuites.registry import select_suites
from milagro_tls.handshake import Connection, ConnectionFailed, Role

from helpers.handshake import config
from helpers.tls_records import alert_record, frame, plaintext_flight


def _client_after_server_hello(world):
    client = Connection(Role.CLIENT, config(world, identity=None, trust=world.trust("echo.example"),
                                             suites=select_suites("yak")[:1]))
    server = Connection(Role.SERVER, config(world, identity="echo.example", trust=world.trust()))
    client.start()
    server.receive_data(client.data_to_send())
    server.next_event()
    messages, _ = plaintext_flight(server.data_to_send())
    return client, messages


def test_a_certificate_in_a_bitcoin_handshake_is_unexpected_before_its_body_arrives(world):
    client, messages = _client_after_server_hello(world)
    header_only = bytes([HandshakeType.certificate]) + (90_000).to_bytes(3, "big")
    client.receive_data(frame(22, messages[0]) + frame(22, header_only))
    event = client.next_event()
    assert isinstance(event, ConnectionFailed) and event.error.alert == 10
    assert client.data_to_send() == alert_record(10)


def test_a_certificate_request_in_a_bitcoin_handshake_is_unexpected(world):
    client, messages = _client_after_server_hello(world)
    request = bytes([HandshakeType.certificate_request]) + (3).to_bytes(3, "big") + b"\x01\x40\x00"
    client.receive_data(frame(22, messages[0] + messages[1] + request))
    event = client.next_event()
    assert isinstance(event, ConnectionFailed) and event.error.alert == 10

"""The byte stream may be cut anywhere: records split across reads, messages across records."""
from __future__ import annotations

import pytest

from milagro_tls.ciphersuites.registry import select_suites
from milagro_tls.handshake import NEED_DATA, Connection, ConnectionFailed, HandshakeComplete, Role
from milagro_tls.handshake.errors import UnexpectedMessage

from helpers.handshake import config
from helpers.tls_records import APPLICATION_DATA, frame, plaintext_flight


def _configs(world, kind="yak"):
    return (config(world, identity="alice", trust=world.trust("echo.example"), suites=select_suites(kind)[:1]),
            config(world, identity="echo.example", trust=world.trust("alice")))


def _drive(client, server, deliver):
    client.start()
    events = {client: [], server: []}
    for _ in range(10):
        for sender, receiver in ((client, server), (server, client)):
            data = sender.data_to_send()
            for piece in deliver(data) if data else ():
                receiver.receive_data(piece)
                while (event := receiver.next_event()) is not NEED_DATA:
                    events[receiver].append(event)
    return events[client], events[server]


@pytest.mark.parametrize("kind", ["ecdh", "yak"])
def test_handshake_completes_when_bytes_arrive_one_at_a_time(world, kind):
    c, s = _configs(world, kind)
    client, server = Connection(Role.CLIENT, c), Connection(Role.SERVER, s)
    client_events, server_events = _drive(client, server, lambda data: [data[i:i + 1] for i in range(len(data))])
    assert [type(e) for e in client_events] == [HandshakeComplete]
    assert [type(e) for e in server_events] == [HandshakeComplete]


def test_handshake_completes_when_messages_span_many_small_records(world):
    def small_records(data):
        messages, rest = plaintext_flight(data)
        payload = b"".join(messages)
        return [b"".join(frame(22, payload[i:i + 50]) for i in range(0, len(payload), 50)) + rest]
    c, s = _configs(world)
    client, server = Connection(Role.CLIENT, c), Connection(Role.SERVER, s)
    client_events, server_events = _drive(client, server, small_records)
    assert [type(e) for e in client_events] == [HandshakeComplete]


def test_a_record_interleaved_into_a_fragmented_message_is_unexpected(world):
    c, s = _configs(world)
    client, server = Connection(Role.CLIENT, c), Connection(Role.SERVER, s)
    client.start()
    messages, _ = plaintext_flight(client.data_to_send())
    hello = messages[0]
    server.receive_data(frame(22, hello[:20]) + frame(APPLICATION_DATA, b"x") + frame(22, hello[20:]))
    event = server.next_event()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, UnexpectedMessage)
    assert server.data_to_send() == frame(21, bytes([2, 10]))

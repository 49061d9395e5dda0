"""What one connection can make us hold before its peer is authenticated, and that no input
makes it hold more (sans-IO: the bound is the engine's, whatever adapter feeds it).

The buffers: the record layer's incoming bytes (at most one incomplete record once the
records before it are consumed), the handshake message being reassembled (bounded per type
from its 4-byte header: ClientHello/ServerHello 131396, key exchanges staple bound + 512,
Finished 12), and a fallback server's copy of the raw ClientHello. The staple inside a key
exchange is bounded by ``max_staple_size`` (16 KiB by default).
"""
from __future__ import annotations

import ssl

import pytest
from tlslite.constants import AlertDescription as A

from milagro_tls.handshake import NEED_DATA, Connection, ConnectionFailed, Role
from milagro_tls.handshake.connection import max_buffered_before_authentication
from milagro_tls.handshake.messages import DEFAULT_MAX_STAPLE_SIZE
from milagro_tls.handshake.records import MAX_CIPHERTEXT, MAX_PLAINTEXT

from helpers.handshake import config
from helpers.tls_records import HANDSHAKE, alert_record, frame

LARGEST_HELLO = 131396
#: The adapters' read sizes: the socket wrapper's recv and asyncio's largest buffer (256 KiB).
READ_SIZES = (1, 4096, 65536, 262144)


def _server(world, **options) -> Connection:
    return Connection(Role.SERVER, config(world, identity="echo.example", trust=world.trust("alice"), **options))


def _client_flight(world) -> bytes:
    client = Connection(Role.CLIENT, config(world, identity="alice", trust=world.trust("echo.example")))
    client.start()
    return client.data_to_send()


def _feed(conn: Connection, data: bytes, read_size: int, bound: int) -> tuple[int, ConnectionFailed | None]:
    """Feed ``data`` in reads of ``read_size``, processing after each as the adapters do; the
    most the connection held between calls, and its failure if it refused."""
    most = 0
    for start in range(0, len(data), read_size):
        conn.receive_data(data[start:start + read_size])
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, ConnectionFailed):
                return most, event
        most = max(most, conn.buffered_bytes)
        assert conn.buffered_bytes <= bound, (start, conn.buffered_bytes, bound)
    return most, None


def _largest_hello_but_one_byte() -> bytes:
    """A ClientHello header announcing the largest legal length, and all its body but the last
    byte, in 2^14-byte records: legal so far, so the server must keep it."""
    message = b"\x01" + LARGEST_HELLO.to_bytes(3, "big") + b"\x00" * (LARGEST_HELLO - 1)
    return b"".join(frame(HANDSHAKE, message[i:i + MAX_PLAINTEXT]) for i in range(0, len(message), MAX_PLAINTEXT))


def test_the_bound_over_the_default_configuration(world):
    """The figures: one incomplete protected record (5 + 18432), the largest ClientHello with
    its header (4 + 131396); a staple of 16384 + 512 fits under it. 149,837 bytes."""
    conn = _server(world)
    assert DEFAULT_MAX_STAPLE_SIZE == 16384 and MAX_CIPHERTEXT == 18432
    assert max_buffered_before_authentication(conn.config) == 5 + 18432 + 4 + 131396 == 149_837
    fallback = _server(world, fallback_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert max_buffered_before_authentication(fallback.config) == 149_837 + 131396 + 1024
    bigger = _server(world, max_staple_size=256 * 1024)
    assert max_buffered_before_authentication(bigger.config) == 5 + 18432 + 4 + 256 * 1024 + 512


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_a_largest_client_hello_held_open_stays_within_the_bound(world, read_size):
    """The worst a legal-so-far peer can do: the server holds the message (and no more), then
    stalls; the consumed records are not kept beside it (they were, before compaction)."""
    conn = _server(world)
    bound = max_buffered_before_authentication(conn.config)
    most, failure = _feed(conn, _largest_hello_but_one_byte(), read_size, bound)
    assert failure is None
    assert LARGEST_HELLO <= most <= bound
    assert conn.buffered_bytes == 4 + LARGEST_HELLO - 1     # exactly the partial message


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_one_byte_past_the_largest_hello_is_refused_from_the_header(world, read_size):
    conn = _server(world)
    data = frame(HANDSHAKE, b"\x01" + (LARGEST_HELLO + 1).to_bytes(3, "big") + b"\x00" * 1000)
    most, failure = _feed(conn, data, read_size, max_buffered_before_authentication(conn.config))
    assert failure is not None and failure.error.alert == A.decode_error
    assert conn.data_to_send() == alert_record(A.decode_error)


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_an_incomplete_largest_record_is_held_and_nothing_more(world, read_size):
    conn = _server(world)
    data = frame(HANDSHAKE, b"\x01" + bytes(MAX_PLAINTEXT - 1))[:-1]
    most, failure = _feed(conn, data, read_size, max_buffered_before_authentication(conn.config))
    assert failure is None and conn.buffered_bytes == 5 + MAX_PLAINTEXT - 1


@pytest.mark.parametrize("read_size", READ_SIZES)
def test_a_key_exchange_at_the_staple_bound_is_held_one_byte_more_is_refused(world, read_size):
    hello = _client_flight(world)
    limit = DEFAULT_MAX_STAPLE_SIZE + 512
    for length, refused in ((limit, False), (limit + 1, True)):
        conn = _server(world)
        bound = max_buffered_before_authentication(conn.config)
        _feed(conn, hello, len(hello), bound)
        conn.data_to_send()
        cke = b"\x10" + length.to_bytes(3, "big") + b"\x00" * (length - 1)
        data = b"".join(frame(HANDSHAKE, cke[i:i + MAX_PLAINTEXT]) for i in range(0, len(cke), MAX_PLAINTEXT))
        most, failure = _feed(conn, data, read_size, bound)
        if refused:
            assert failure is not None and failure.error.alert == A.decode_error
        else:
            assert failure is None and conn.buffered_bytes == 4 + limit - 1


@pytest.mark.parametrize("read_size", [65536, 262144])
def test_a_fallback_server_keeps_no_more_raw_hello_than_its_bound(world, read_size):
    """The raw ClientHello kept for Python ssl's replay is capped before appending a read."""
    conn = _server(world, fallback_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    bound = max_buffered_before_authentication(conn.config)
    most, failure = _feed(conn, _largest_hello_but_one_byte(), read_size, bound)
    assert failure is None and most <= bound

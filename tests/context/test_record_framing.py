"""A request the peer already sent stays visible to poll() on the fd.

gunicorn parks a kept-alive connection in its poller and waits for the fd to become readable.
If a read had pulled the next request's TLS record out of the kernel into our buffers, the fd
would never become readable again and the connection would time out under a client that is
waiting for its answer (seen as "Server disconnected without sending a response" under load).
So a read takes at most the record it needs plus the next record's header, for our suites and
for the Python-ssl fallback alike."""
from __future__ import annotations

import select
import socket
import ssl
import threading

import pytest

from milagro_tls.adapters.sslsocket import _RecordFraming

from helpers.contexts import make_context
from helpers.pki import ec_key, make_leaf, make_root, write_chain


def _accepting(context):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: dict = {}

    def accept():
        raw, _ = listener.accept()
        try:
            accepted["tls"] = context.wrap_socket(raw, server_side=True)
        except BaseException as exc:       # the test reports it
            accepted["error"] = exc
    thread = threading.Thread(target=accept)
    thread.start()
    return listener, thread, accepted


def _second_record_stays_in_the_kernel(server_context, client_wrap) -> None:
    listener, thread, accepted = _accepting(server_context)
    with listener:
        raw = socket.create_connection(listener.getsockname())
        # Both records reach the server's kernel before it reads (no Nagle wait for an ACK).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = client_wrap(raw)
        thread.join(10)
        assert "error" not in accepted and "tls" in accepted
        server = accepted["tls"]
        with client, server:
            client.sendall(b"first request")      # one record each
            client.sendall(b"second request")
            server.settimeout(None)
            assert server.recv(len(b"first request")) == b"first request"
            # Nothing asked for the second record yet: it must still make the fd readable.
            readable, _, _ = select.select([server], [], [], 5)
            assert readable == [server]
            assert server.recv(100) == b"second request"
            readable, _, _ = select.select([server], [], [], 0)
            assert readable == []
            # A reader that asks for more takes several records at once, and all of them:
            # nothing complete stays behind where poll() cannot see it.
            for word in (b"third", b"fourth", b"fifth"):
                client.sendall(word)
            assert server.recv(100) == b"thirdfourthfifth"
            readable, _, _ = select.select([server], [], [], 0)
            assert readable == []


@pytest.mark.parametrize("suites", ["yak", "ecdh"])
def test_bitcoin_suites_leave_the_next_record_readable(world, suites):
    server_context = make_context(world, identity="echo.example", trust=("alice",))
    client_context = make_context(world, identity="alice", trust=("echo.example",), suites=suites)
    with server_context, client_context:
        _second_record_stays_in_the_kernel(
            server_context, lambda raw: client_context.wrap_socket(raw, server_hostname="echo.example"))


def test_fallback_leaves_the_next_record_readable(world, tmp_path):
    root = make_root()
    leaf = make_leaf(root, ec_key(), dns_names=("localhost",))
    (tmp_path / "ca.pem").write_bytes(root.pem)
    certfile, keyfile = write_chain(tmp_path, "leaf", leaf)
    server_context = make_context(world, identity="echo.example", trust=("alice",))
    server_context.load_cert_chain(certfile, keyfile)
    python_client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with server_context:
        _second_record_stays_in_the_kernel(
            server_context, lambda raw: python_client.wrap_socket(raw, server_hostname="localhost"))


def test_framing_asks_for_one_record_and_the_next_header():
    framing = _RecordFraming()
    assert framing.wanted() == 5                           # a header first
    framing.consumed(b"\x17\x03\x03\x00\x10")
    assert framing.wanted() == 16 + 5                      # its body and the next header
    framing.consumed(b"b" * 16 + b"\x17\x03")
    assert framing.wanted() == 3                           # the rest of that header
    framing.consumed(b"\x03\x40\x00")
    assert framing.wanted() == 0x4000 + 5
    framing.consumed(b"c" * 100)
    assert framing.wanted() == 0x4000 - 100 + 5
    # A caller reading more than this record holds may take whole records beyond it, but only
    # as much as it asked for beyond this record's length.
    assert framing.wanted(0x4000) == 0x4000 - 100 + 5
    assert framing.wanted(0x4000 + 300) == 0x4000 - 100 + 5 + 300
    framing.consumed(b"c" * (0x4000 - 100))
    assert framing.wanted(1000) == 5 + 1000                 # at a boundary: a header, then up to 1000

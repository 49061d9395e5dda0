"""wrap_socket over real TCP on loopback: the socket.socket subclass behaves like ssl.SSLSocket."""
from __future__ import annotations

import socket
import ssl

import pytest

from milagro_tls.adapters.errors import MilagroPeerVerificationError, MilagroSSLError
from milagro_tls.context import Context
from milagro_tls.handshake import Connection, Role

from helpers.contexts import echo_server, make_context, raw_client_exchange
from helpers.tls_records import alert_record


@pytest.fixture(scope="module")
def server_context(world):
    context = make_context(world, identity="echo.example", trust=("alice",))
    yield context
    context.close()


@pytest.fixture(scope="module")
def client_context(world):
    context = make_context(world, identity="alice", trust=("echo.example",))
    yield context
    context.close()


def test_context_is_an_ssl_context(client_context):
    assert isinstance(client_context, ssl.SSLContext)


@pytest.mark.parametrize("suites", ["yak", "ecdh"])
def test_echo_over_tcp_reports_suite_and_peer(world, server_context, suites):
    client_context = make_context(world, identity="alice", trust=("echo.example",), suites=suites)
    with client_context, echo_server(server_context) as (port, errors):
        raw = socket.create_connection(("127.0.0.1", port))
        with client_context.wrap_socket(raw, server_hostname="echo.example") as tls:
            assert isinstance(tls, socket.socket) and tls.fileno() >= 0
            name, version, bits = tls.cipher()
            assert name.startswith("YAK-BTC" if suites == "yak" else "ECDH-BTC") and version == "TLSv1.2"
            assert tls.version() == "TLSv1.2"
            peer = tls.getpeercert()
            assert peer["name"] == "echo.example" and peer["authenticated"]
            assert peer["locator"] == world.parties["echo.example"].locator.to_json()
            assert peer["confirmations"] >= 6
            tls.sendall(b"x" * 100_000)
            received = b""
            while len(received) < 100_000:
                received += tls.recv(65536)
            assert received == b"x" * 100_000
        assert errors == []


def test_timeout_does_not_kill_the_session(server_context, client_context):
    def slow(conn):
        request = conn.recv(100)
        import time
        time.sleep(0.5)
        conn.sendall(request.upper())
    with echo_server(server_context, handler=slow) as (port, _):
        tls = client_context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
        with tls:
            tls.sendall(b"late")
            tls.settimeout(0.1)
            with pytest.raises(TimeoutError):
                tls.recv(100)
            tls.settimeout(5)
            assert tls.recv(100) == b"LATE"


def test_non_blocking_mode_raises_want_read(server_context, client_context):
    with echo_server(server_context) as (port, _):
        tls = client_context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
        with tls:
            tls.setblocking(False)
            with pytest.raises(ssl.SSLWantReadError):
                tls.recv(10)
            tls.setblocking(True)
            tls.sendall(b"ok")
            assert tls.recv(10) == b"ok"


def test_makefile_and_pending(server_context, client_context):
    with echo_server(server_context) as (port, _):
        tls = client_context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
        with tls, tls.makefile("rwb") as stream:
            stream.write(b"line one\nline two\n")
            stream.flush()
            assert stream.readline() == b"line one\n"
            assert stream.readline() == b"line two\n"


def test_unpinned_server_is_refused_with_a_verification_error(world, server_context):
    stranger = make_context(world, identity=None, trust=("idp.example",))
    with stranger, echo_server(server_context) as (port, errors):
        with pytest.raises(MilagroPeerVerificationError) as refused:
            stranger.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
        assert isinstance(refused.value, ssl.SSLCertVerificationError)
        assert refused.value.alert == 42 and refused.value.alert_sent


def test_server_side_error_is_an_ssl_error_carrying_the_alert(world, server_context):
    mallory = make_context(world, identity="mallory.example", trust=("echo.example",))
    with mallory, echo_server(server_context) as (port, errors):
        with pytest.raises(MilagroSSLError) as refused:
            tls = mallory.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="echo.example")
            tls.recv(10)
        assert refused.value.alert == 42 and not refused.value.alert_sent
    assert any(isinstance(e, MilagroSSLError) and e.alert == 42 and e.alert_sent for e in errors)


def test_a_handshake_refused_in_accept_closes_the_connection(world, server_context):
    """As ssl.SSLSocket: a wrapped socket whose handshake fails in accept() is closed once the
    alert is out, even while the server keeps the exception (whose traceback holds the socket)."""
    mallory = make_context(world, identity="mallory.example", trust=("echo.example",))
    with mallory, echo_server(server_context) as (port, errors):
        wire = raw_client_exchange(port, Connection(Role.CLIENT, mallory.config, server_hostname="echo.example"))
    assert wire.endswith(alert_record(42))          # then EOF: raw_client_exchange read to the end
    assert [(e.alert, e.alert_sent) for e in errors] == [(42, True)]


def test_recv_after_shutdown_drains_the_plain_socket_as_ssl_does(server_context, client_context):
    """After shutdown(SHUT_WR) (close_notify and FIN sent) recv reads the raw socket until EOF,
    as ssl.SSLSocket's does: how gunicorn's close_graceful drains before close."""
    with echo_server(server_context) as (port, errors):
        tls = client_context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                         server_hostname="echo.example")
        with tls:
            tls.sendall(b"last words")
            assert tls.recv(100) == b"last words"
            tls.shutdown(socket.SHUT_WR)
            drained = b""
            while chunk := tls.recv(4096):            # the server's close_notify record, then EOF
                drained += chunk
    assert drained[:1] == b"\x15"                      # an (encrypted) alert record: close_notify
    assert errors == []

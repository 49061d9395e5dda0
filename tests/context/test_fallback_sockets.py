"""The standard-suite fallback over real sockets against Python ssl, both ways:

- our client (``standard_fallback=True``, the test CA loaded with ``load_verify_locations``)
  to a Python-ssl server: X.509-verified ECDHE, and ``getpeercert()`` is ssl's X.509 dict;
- a pinned name never falls back: the same client to the same server under a pinned name
  offers only the Bitcoin suites and fails cleanly (OpenSSL's handshake_failure);
- a Python-ssl client to our server with ``fallback_certificate=``: served by Python ssl.
"""
from __future__ import annotations

import contextlib
import socket
import ssl
import threading

import pytest

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.context import Context

from helpers.contexts import echo_server, make_context
from helpers.pki import ec_key, make_leaf, make_root, write_chain

HANDSHAKE_FAILURE = 40


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA and an ECDSA leaf for localhost and echo.example (the pinned name)."""
    directory = tmp_path_factory.mktemp("pki")
    root = make_root()
    leaf = make_leaf(root, ec_key(), dns_names=("localhost", "echo.example"))
    (directory / "ca.pem").write_bytes(root.pem)
    certfile, keyfile = write_chain(directory, "leaf", leaf)
    return directory / "ca.pem", certfile, keyfile


@contextlib.contextmanager
def python_ssl_echo_server(certfile, keyfile):
    """Python ssl (OpenSSL) serving an echo on 127.0.0.1. Yields (port, outcomes): one entry per
    connection, the negotiated cipher or the SSLError that ended the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    outcomes: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    outcomes.append(tls.cipher())
                    while data := tls.recv(65536):
                        tls.sendall(data)
            except (ssl.SSLError, OSError) as exc:
                outcomes.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcomes
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def fallback_client(world, ca, *, pinned: tuple[str, ...]) -> Context:
    context = make_context(world, identity=None, trust=pinned, standard_fallback=True)
    context.load_verify_locations(cafile=str(ca))
    return context


def python_ssl_view(ca, port: int, hostname: str) -> dict:
    """What Python ssl's own client reports for the same server: the reference dict."""
    client = ssl.create_default_context(cafile=str(ca))
    with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=hostname) as tls:
        return tls.getpeercert()


def test_our_client_falls_back_to_x509_ecdhe_against_python_ssl(world, pki):
    ca, certfile, keyfile = pki
    with fallback_client(world, ca, pinned=("echo.example",)) as client, \
            python_ssl_echo_server(certfile, keyfile) as (port, outcomes):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="localhost") as tls:
            tls.sendall(b"over a standard suite")
            assert tls.recv(100) == b"over a standard suite"
            name, version, bits = tls.cipher()
            peer = tls.getpeercert()
            der = tls.getpeercert(binary_form=True)
        reference = python_ssl_view(ca, port, "localhost")
    assert name.startswith("ECDHE-") and version == "TLSv1.2" and bits >= 128
    assert outcomes[0][0] == name                        # the server agrees on the suite
    assert peer == reference                             # ssl's own dict for the same certificate
    assert peer["subjectAltName"] == (("DNS", "localhost"), ("DNS", "echo.example"))
    assert der == ssl.PEM_cert_to_DER_cert(certfile.read_text())


def test_a_pinned_name_never_falls_back(world, pki):
    """The same fallback-enabled client, the same server and certificate (valid for the name):
    under a pinned name only Bitcoin suites are offered, and OpenSSL refuses them."""
    ca, certfile, keyfile = pki
    with fallback_client(world, ca, pinned=("echo.example",)) as client, \
            python_ssl_echo_server(certfile, keyfile) as (port, outcomes):
        with pytest.raises(MilagroSSLError) as refused:
            client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                               server_hostname="echo.example")
    assert refused.value.alert == HANDSHAKE_FAILURE and not refused.value.alert_sent
    assert isinstance(outcomes[0], ssl.SSLError) and outcomes[0].reason == "NO_SHARED_CIPHER"


def test_the_same_name_unpinned_does_fall_back(world, pki):
    """The control for the test above: the pin, not the name or the certificate, is the reason."""
    ca, certfile, keyfile = pki
    with fallback_client(world, ca, pinned=("idp.example",)) as client, \
            python_ssl_echo_server(certfile, keyfile) as (port, outcomes):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="echo.example") as tls:
            assert tls.cipher()[0].startswith("ECDHE-")
            assert tls.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("DNS", "echo.example"))


def test_fallback_client_still_gets_a_bitcoin_suite_from_our_server(world, pki):
    ca, _, _ = pki
    server = make_context(world, identity="echo.example", trust=())
    with server, fallback_client(world, ca, pinned=("echo.example",)) as client, echo_server(server) as (port, errors):
        # standard_fallback=True changes nothing toward a pinned milagro server.
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="echo.example") as tls:
            assert tls.cipher()[0].startswith(("ECDH-BTC", "YAK-BTC"))
            assert tls.getpeercert()["name"] == "echo.example"
    assert errors == []


@pytest.mark.parametrize("maximum_version", [ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_2])
def test_python_ssl_client_is_served_by_the_fallback_certificate(world, pki, maximum_version):
    ca, certfile, keyfile = pki
    server = make_context(world, identity="echo.example", trust=(), fallback_certificate=(str(certfile), str(keyfile)))
    seen = []

    def report(conn):
        seen.append((conn.cipher(), conn.version(), conn.getpeercert()))
        while data := conn.recv(65536):
            conn.sendall(data)

    client = ssl.create_default_context(cafile=str(ca))
    client.maximum_version = maximum_version
    with server, echo_server(server, handler=report) as (port, errors):
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="localhost") as tls:
            tls.sendall(b"standard client")
            assert tls.recv(100) == b"standard client"
            cipher, version = tls.cipher(), tls.version()
            peer = tls.getpeercert()
    assert errors == []
    assert peer["subjectAltName"] == (("DNS", "localhost"), ("DNS", "echo.example"))
    expected = "TLSv1.2" if maximum_version is ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    assert version == expected and cipher[1] == expected
    [(server_cipher, server_version, client_cert)] = seen
    assert server_cipher == cipher and server_version == expected and client_cert is None

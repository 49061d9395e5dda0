"""Python's ``ssl`` module (OpenSSL in-process) as client of our server and as server for our client."""
from __future__ import annotations

import socket
import ssl

from ..peers import (EXPECTED_REPLY, IO_TIMEOUT, REQUEST, bulk_request, capture_client_hello, connect, exchange,
                     our_server, python_ssl_server)
from ..world import CLIENT_NAME, SERVER_NAME
from . import HANDSHAKE_FAILURE, attempt, case, check_alert, describe, offered_suites

_PRIVATE_USE = range(0xFF00, 0x10000)
#: Signalling values in the suite list, not suites: renegotiation_info (RFC 5746 §3.3) and
#: downgrade protection (RFC 7507).
_SCSVS = {0x00FF: "EMPTY_RENEGOTIATION_INFO_SCSV", 0x5600: "FALLBACK_SCSV"}


def _standard(suites: list[int]) -> list[int]:
    return [s for s in suites if s not in _PRIVATE_USE and s not in _SCSVS]


def _hex(suites: list[int]) -> str:
    return " ".join(_SCSVS.get(s, f"{s:04X}") for s in suites)


def _python_client(world, port: int, maximum_version=None):
    context = ssl.create_default_context(cafile=str(world.x509.ca))
    if maximum_version is not None:
        context.maximum_version = maximum_version
    plain = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        return context.wrap_socket(plain, server_hostname="localhost")
    except BaseException:
        plain.close()
        raise


def _python_client_to_fallback(label: str, maximum_version):
    @case("Python ssl → ours", f"our server with a fallback certificate; ssl client {label}",
          "served through Python ssl: verified chain, the line comes back reversed")
    def served(world, row):
        context = world.server_context(fallback=True)
        with our_server(context) as log:
            with _python_client(world, log.port, maximum_version) as tls:
                negotiated, version, _ = tls.cipher()
                reply = exchange(tls)
            served = log.first()
        row.note(f"ssl client: {negotiated} {version}, reply {reply!r}")
        row.check(reply == EXPECTED_REPLY, f"reply {reply!r}")
        if maximum_version is ssl.TLSVersion.TLSv1_2:
            row.check(negotiated.startswith("ECDHE-ECDSA-") and version == "TLSv1.2", "not TLS 1.2 ECDHE-ECDSA")
        if row.check(served.error is None, f"our server: {served.error!r}"):
            row.check(served.cipher[0] == negotiated, f"our server reports {served.cipher}")
            row.check(served.received == REQUEST, f"our server received {served.received!r}")
    return served


_python_client_to_fallback("default (TLS 1.3 and 1.2)", None)
_python_client_to_fallback("capped at TLS 1.2", ssl.TLSVersion.TLSv1_2)


@case("Python ssl → ours", "our server without a fallback certificate",
      "handshake_failure (40): ssl.SSLError SSLV3_ALERT_HANDSHAKE_FAILURE on the ssl side")
def python_client_refused(world, row):
    context = world.server_context(fallback=False)
    with our_server(context) as log:
        tls, error = attempt(lambda: _python_client(world, log.port))
        if tls is not None:
            tls.close()
        served = log.first()
    if row.check(error is not None, "the ssl client connected"):
        row.note(f"ssl client: {describe(error)}")
        row.check(getattr(error, "reason", None) == "SSLV3_ALERT_HANDSHAKE_FAILURE", "another reason")
    check_alert(row, served.error, alert=HANDSHAKE_FAILURE, sent=True, who="our server")


#: One line of this size each way: about 16 full-size records (RFC 5246 §6.2.1: 2^14 bytes each).
BULK_SIZE = 256 * 1024


def _fallback_to_python_server(cipher: str | None):
    label = f"server forced to `set_ciphers({cipher!r})`" if cipher else "server's choice of suite"
    @case("ours → Python ssl", f"client with standard_fallback, name not pinned (`localhost`), {label}, "
          f"{BULK_SIZE // 1024} KiB each way",
          "X.509-verified ECDHE-ECDSA over TLS 1.2; our record layer against OpenSSL's, both directions")
    def fallback(world, row):
        context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True,
                                ca=world.x509.ca)
        request, expected = bulk_request(BULK_SIZE)
        with python_ssl_server(world.x509.cert, world.x509.key, ciphers=cipher) as log:
            with connect(context, log.port, "localhost") as tls:
                negotiated, version, _ = tls.cipher()
                peer = tls.getpeercert()
                reply = exchange(tls, request)
            served = log.first()
        row.note(f"our client: {negotiated} {version}, {len(reply)} bytes back")
        row.check(negotiated.startswith("ECDHE-ECDSA-") and version == "TLSv1.2", "not TLS 1.2 ECDHE-ECDSA")
        if cipher:
            row.check(negotiated == cipher, f"negotiated {negotiated}")
        row.check(("DNS", "localhost") in peer.get("subjectAltName", ()), "peer certificate not reported")
        row.check(reply == expected, f"reply differs ({len(reply)} bytes, expected {len(expected)})")
        if row.check(served.error is None, f"ssl server: {served.error!r}"):
            row.check(served.cipher[0] == negotiated, f"ssl server reports {served.cipher}")
            row.check(served.received == request, "ssl server received other bytes")
    return fallback


for _cipher in (None, "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305"):
    _fallback_to_python_server(_cipher)


@case("ours → Python ssl", "client with standard_fallback dialling a PINNED name (`echo.example`, also in the "
      "server's X.509 certificate)",
      "no fallback: the ClientHello offers only 0xFFxx suites; the ssl server finds no shared cipher and "
      "sends handshake_failure (40)")
def pinned_name_never_falls_back(world, row):
    context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True, ca=world.x509.ca)
    pinned = offered_suites(capture_client_hello(lambda port: connect(context, port, SERVER_NAME)))
    unpinned = offered_suites(capture_client_hello(lambda port: connect(context, port, "localhost")))
    row.note(f"ClientHello to {SERVER_NAME}: {_hex(pinned)}; to localhost: {_hex(unpinned)}")
    row.check(bool(pinned) and not _standard(pinned), "the pinned ClientHello offers standard suites")
    row.check(bool(_standard(unpinned)), "the unpinned ClientHello offers no standard suite "
              "(so this row would prove nothing)")
    with python_ssl_server(world.x509.cert, world.x509.key) as log:
        tls, error = attempt(lambda: connect(context, log.port, SERVER_NAME))
        if tls is not None:
            tls.close()
        served = log.first()
    check_alert(row, error, alert=HANDSHAKE_FAILURE, sent=False, who="our client")
    if row.check(served.error is not None, "the ssl server completed a handshake"):
        row.note(f"ssl server: {describe(served.error)}")
        row.check(getattr(served.error, "reason", None) == "NO_SHARED_CIPHER", "ssl server: not NO_SHARED_CIPHER")

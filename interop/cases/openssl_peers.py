"""The real OpenSSL binary: ``openssl s_server`` against our client, ``openssl s_client`` against our server."""
from __future__ import annotations

import ssl

from ..peers import EXPECTED_REPLY, REQUEST, connect, exchange, openssl_client, openssl_server, our_server
from ..world import CLIENT_NAME, SERVER_NAME
from . import HANDSHAKE_FAILURE, attempt, case, check_alert, describe

#: The three AEADs of our suites, as OpenSSL names their ECDHE-ECDSA suites (RFC 5289, RFC 7905).
FALLBACK_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                    "ECDHE-ECDSA-CHACHA20-POLY1305")


def _lines(output: str, *prefixes: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith(prefixes)]


def _alert_lines(output: str) -> list[str]:
    """OpenSSL's error lines, without the per-process address prefix."""
    return [line.split(":", 1)[1] if ":error:" in line else line
            for line in output.splitlines() if "alert" in line or "no shared cipher" in line]


# --- our client -> openssl s_server ------------------------------------------------------------------
@case("ours → openssl s_server", "client offers only the Bitcoin suites; server has an ECDSA certificate",
      "server refuses with handshake_failure (40); we raise MilagroSSLError(alert=40, received); "
      "s_server logs `no shared cipher`")
def bitcoin_suites_only(world, row):
    context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,))
    with openssl_server(world.x509.cert, world.x509.key) as server:
        tls, error = attempt(lambda: connect(context, server.port, SERVER_NAME))
        if tls is not None:
            tls.close()
    check_alert(row, error, alert=HANDSHAKE_FAILURE, sent=False, who="our client")
    if error is not None:
        row.check("handshake_failure" in str(error), "our error message does not name handshake_failure")
    row.check("no shared cipher" in server.output, "s_server did not log `no shared cipher`")
    row.note("s_server: " + " / ".join(_alert_lines(server.output)))


def _fallback_to_s_server(cipher: str):
    @case("ours → openssl s_server", f"client with standard_fallback, server forced to `-cipher {cipher}`",
          f"X.509-verified {cipher} over TLS 1.2; the line comes back reversed")
    def fallback(world, row):
        context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True,
                                ca=world.x509.ca)
        with openssl_server(world.x509.cert, world.x509.key, "-cipher", cipher) as server:
            tls = connect(context, server.port, "localhost")
            with tls:
                negotiated, version, _ = tls.cipher()
                peer = tls.getpeercert()
                reply = exchange(tls)
        row.note(f"our client: {negotiated} {version}, peer subjectAltName {list(peer.get('subjectAltName', ()))}")
        row.check(negotiated == cipher, f"negotiated {negotiated}")
        row.check(version == "TLSv1.2", f"version {version}")
        row.check(("DNS", "localhost") in peer.get("subjectAltName", ()), "peer certificate not reported")
        row.check(reply == EXPECTED_REPLY, f"reply {reply!r}")
        row.note(f"s_server: {', '.join(_lines(server.output, 'Protocol version', 'Ciphersuite'))}; "
                 f"reply {reply!r}")
        row.check(f"Ciphersuite: {cipher}" in server.output, "s_server reports another suite")
    return fallback


for _cipher in FALLBACK_CIPHERS:
    _fallback_to_s_server(_cipher)


def _fallback_group(group: str):
    @case("ours → openssl s_server", f"client with standard_fallback, server forced to `-groups {group}`",
          f"ECDHE over {group} (RFC 8422 ServerKeyExchange checked and verified); the line comes back reversed")
    def fallback(world, row):
        context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True,
                                ca=world.x509.ca)
        with openssl_server(world.x509.cert, world.x509.key, "-groups", group) as server:
            with connect(context, server.port, "localhost") as tls:
                negotiated, version, _ = tls.cipher()
                reply = exchange(tls)
        row.note(f"our client: {negotiated} {version}, reply {reply!r}")
        row.check(negotiated.startswith("ECDHE-ECDSA-") and version == "TLSv1.2", "not TLS 1.2 ECDHE-ECDSA")
        row.check(reply == EXPECTED_REPLY, f"reply {reply!r}")
    return fallback


for _group in ("X25519", "P-256", "P-384"):
    _fallback_group(_group)


@case("ours → openssl s_server", "client with standard_fallback, server has an RSA-2048 certificate",
      "X.509-verified ECDHE-RSA over TLS 1.2 (OpenSSL signs with RSA-PSS); the line comes back reversed")
def fallback_rsa(world, row):
    context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True,
                            ca=world.rsa_x509.ca)
    with openssl_server(world.rsa_x509.cert, world.rsa_x509.key) as server:
        with connect(context, server.port, "localhost") as tls:
            negotiated, version, _ = tls.cipher()
            reply = exchange(tls)
    row.note(f"our client: {negotiated} {version}; s_server: "
             f"{', '.join(_lines(server.output, 'Ciphersuite', 'Signature Algorithms'))[:120]}…")
    row.check(negotiated.startswith("ECDHE-RSA-") and version == "TLSv1.2", "not TLS 1.2 ECDHE-RSA")
    row.check(reply == EXPECTED_REPLY, f"reply {reply!r}")


@case("ours → openssl s_server", "client with standard_fallback and ALPN [h2, http/1.1], server `-alpn http/1.1`",
      "ALPN http/1.1 selected on both sides of the fallback")
def fallback_alpn(world, row):
    context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True, ca=world.x509.ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with openssl_server(world.x509.cert, world.x509.key, "-alpn", "http/1.1") as server:
        with connect(context, server.port, "localhost") as tls:
            selected = tls.selected_alpn_protocol()
            reply = exchange(tls)
    row.note(f"our client: ALPN {selected!r}, reply {reply!r}")
    row.check(selected == "http/1.1", f"our client selected {selected!r}")
    row.check(reply == EXPECTED_REPLY, f"reply {reply!r}")


@case("ours → openssl s_server", "client with standard_fallback, server certificate from a root we do not trust",
      "we refuse the chain: ssl.SSLCertVerificationError carrying the alert we sent; s_server sees that alert")
def fallback_untrusted_root(world, row):
    context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), standard_fallback=True, ca=world.x509.ca)
    with openssl_server(world.stranger_x509.cert, world.stranger_x509.key) as server:
        tls, error = attempt(lambda: connect(context, server.port, "localhost"))
        if tls is not None:
            tls.close()
    if row.check(error is not None, "the handshake succeeded with an untrusted certificate"):
        row.note(f"our client: {describe(error)}")
        row.check(isinstance(error, ssl.SSLCertVerificationError), "not an ssl.SSLCertVerificationError")
        row.check(getattr(error, "alert_sent", False), "no alert sent")
    row.note("s_server: " + " / ".join(_alert_lines(server.output)))
    row.check(bool(_alert_lines(server.output)), "s_server logged no alert from us")


# --- openssl s_client -> our server ------------------------------------------------------------------
def _s_client_to_fallback(label: str, *extra: str):
    @case("openssl s_client → ours", f"our server with a fallback certificate; s_client {label}",
          "served through Python ssl: chain verified by s_client, the line comes back reversed")
    def served(world, row):
        context = world.server_context(fallback=True)
        with our_server(context) as log:
            result = openssl_client(log.port, "-CAfile", str(world.x509.ca), "-verify_return_error",
                                    "-servername", "localhost", "-verify_hostname", "localhost", *extra)
            served = log.first()
        output = (result.stdout + result.stderr).decode(errors="replace")
        row.note(f"s_client: exit {result.returncode}, "
                 f"{', '.join(_lines(output, 'Protocol version', 'Ciphersuite', 'Verification'))}")
        row.check(result.returncode == 0, f"s_client exit status {result.returncode}")
        row.check("Verification: OK" in output, "s_client did not verify the chain")
        row.check(EXPECTED_REPLY in result.stdout, f"reply missing from s_client's output {result.stdout!r}")
        if row.check(served.error is None, f"our server: {served.error!r}"):
            row.note(f"our server: {served.cipher[0]} {served.version}")
            row.check("BTC" not in served.cipher[0], "our server reports a Bitcoin suite")
            row.check(served.received == REQUEST, f"our server received {served.received!r}")
        if "-tls1_2" in extra:
            row.check(f"Ciphersuite: {served.cipher and served.cipher[0]}" in output
                      and "ECDHE-ECDSA" in output, "not an ECDHE-ECDSA suite")
    return served


_s_client_to_fallback("default (offers TLS 1.3 and 1.2)")
_s_client_to_fallback("-tls1_2", "-tls1_2")


@case("openssl s_client → ours", "our server with a fallback certificate and ALPN [h2, http/1.1] "
      "(set before the certificate); `s_client -alpn http/1.1`",
      "served through Python ssl with ALPN http/1.1")
def s_client_alpn(world, row):
    context = world.context(identity=SERVER_NAME, trust=(CLIENT_NAME,))
    # ALPN first: the fallback copies the protocols when the certificate is loaded (see the report).
    context.set_alpn_protocols(["h2", "http/1.1"])
    context.load_cert_chain(str(world.x509.cert), str(world.x509.key))
    with our_server(context) as log:
        result = openssl_client(log.port, "-CAfile", str(world.x509.ca), "-servername", "localhost",
                                "-alpn", "http/1.1", brief=False)
        served = log.first()
    output = (result.stdout + result.stderr).decode(errors="replace")
    row.note(f"s_client: exit {result.returncode}, {', '.join(_lines(output, 'ALPN', 'No ALPN'))}")
    row.check("ALPN protocol: http/1.1" in output, "s_client got no ALPN protocol")
    row.check(EXPECTED_REPLY in result.stdout, "reply missing from s_client's output")
    row.check(served.error is None, f"our server: {served.error!r}")


@case("openssl s_client → ours", "our server without a fallback certificate",
      "our server sends handshake_failure (40); s_client prints `alert handshake failure`")
def s_client_refused(world, row):
    context = world.server_context(fallback=False)
    with our_server(context) as log:
        result = openssl_client(log.port, "-servername", "localhost")
        served = log.first()
    output = (result.stdout + result.stderr).decode(errors="replace")
    row.note(f"s_client: exit {result.returncode}, " + " / ".join(_alert_lines(output)))
    row.check(result.returncode != 0, "s_client reported success")
    row.check("alert handshake failure" in output, "s_client did not print `alert handshake failure`")
    row.check("alert number 40" in output, "s_client did not report alert number 40")
    check_alert(row, served.error, alert=HANDSHAKE_FAILURE, sent=True, who="our server")

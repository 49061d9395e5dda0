"""Vanilla tlslite-ng 0.8.2 as a client of our server, in a process that never imports milagro_tls."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..peers import EXPECTED_REPLY, IO_TIMEOUT, REQUEST, our_server
from ..world import CLIENT_NAME, SERVER_NAME
from . import HANDSHAKE_FAILURE, case, check_alert

_PEER_SCRIPT = Path(__file__).resolve().parents[1] / "tlslite_peer.py"


def run_tlslite_client(port: int, *, mode: str, max_version=None) -> dict:
    """One connection by ``tlslite_peer.py``; ``-I`` keeps the caller's paths and environment out."""
    job = {"port": port, "mode": mode, "max_version": max_version, "request": REQUEST.decode()}
    process = subprocess.run([sys.executable, "-I", str(_PEER_SCRIPT)], input=json.dumps([job]),
                             capture_output=True, text=True, timeout=IO_TIMEOUT * 2)
    if process.returncode != 0:
        raise RuntimeError(f"tlslite peer exited {process.returncode}: {process.stderr.strip()[-2000:]}")
    return json.loads(process.stdout)[0]


def _check_vanilla(row, result: dict) -> None:
    vanilla = result["vanilla"]
    row.check(not vanilla["milagro_imported"], "milagro_tls was imported in the tlslite process")
    row.check(not vanilla["private_suites_registered"], f"private suites registered: {vanilla['private_suites_registered']}")
    row.check(not vanilla["locator_extension_registered"], "our locator extension is registered in tlslite")


def _refused(mode: str, call: str):
    @case("tlslite-ng → ours", f"`{call}` against our server without a fallback certificate",
          "TLSRemoteAlert handshake_failure (40); our server reports the alert it sent")
    def refused(world, row):
        context = world.server_context(fallback=False)
        with our_server(context) as log:
            result = run_tlslite_client(log.port, mode=mode)
            served = log.first()
        _check_vanilla(row, result)
        row.note(f"tlslite {result['vanilla']['tlslite_version']}: {result['error'] or 'completed'}")
        row.check(not result["completed"], "tlslite completed a handshake")
        row.check(result["alert"] == HANDSHAKE_FAILURE and result["error"].startswith("TLSRemoteAlert"),
                  f"tlslite saw {result['error']}")
        check_alert(row, served.error, alert=HANDSHAKE_FAILURE, sent=True, who="our server")
    return refused


_refused("cert", "handshakeClientCert()")
_refused("anonymous", "handshakeClientAnonymous()")


def _served(label: str, max_version, *, ecdhe: bool):
    expected = ("completes with an ECDHE-ECDSA suite (TLS 1.2) through Python ssl; the line comes back reversed"
                if ecdhe else "completes through Python ssl (tlslite offers TLS 1.3); the line comes back reversed")
    @case("tlslite-ng → ours", f"`handshakeClientCert()` {label}, our server with a fallback certificate", expected)
    def served(world, row):
        context = world.server_context(fallback=True)
        with our_server(context) as log:
            result = run_tlslite_client(log.port, mode="cert", max_version=max_version)
            served = log.first()
        _check_vanilla(row, result)
        row.note(f"tlslite: {result['cipher_name'] or result['error']} version {result['version']}, "
                 f"reply {result['reply'].encode()!r}")
        if not row.check(result["completed"], f"tlslite: {result['error']}"):
            return
        if ecdhe:
            row.check(result["version"] == [3, 3] and "ECDHE_ECDSA" in (result["cipher_name"] or ""),
                      "not a TLS 1.2 ECDHE-ECDSA suite")
        row.check(result["server_certificate_sha256"] == world.x509.sha256, "tlslite saw another certificate")
        row.check(result["reply"].encode() == EXPECTED_REPLY, "wrong reply")
        if row.check(served.error is None, f"our server: {served.error!r}"):
            row.note(f"our server: {served.cipher[0]} {served.version}")
            row.check(served.received == REQUEST, f"our server received {served.received!r}")
    return served


_served("capped at TLS 1.2 (`maxVersion=(3, 3)`)", [3, 3], ecdhe=True)
_served("with default settings", None, ecdhe=False)


@case("tlslite-ng → ours", "`handshakeClientAnonymous()` against our server with a fallback certificate",
      "OpenSSL behind our server serves no anonymous suites: handshake_failure (40) from it")
def anonymous_with_fallback(world, row):
    context = world.server_context(fallback=True)
    with our_server(context) as log:
        result = run_tlslite_client(log.port, mode="anonymous")
        served = log.first()
    _check_vanilla(row, result)
    row.note(f"tlslite: {result['error'] or 'completed'}")
    row.check(result["alert"] == HANDSHAKE_FAILURE, f"tlslite saw {result['error']}")
    if row.check(served.error is not None, "our server completed a handshake"):
        row.note(f"our server: {type(served.error).__name__}: {served.error}")

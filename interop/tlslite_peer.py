"""A vanilla tlslite-ng client, run by the harness as ``python -I tlslite_peer.py`` in its own process.

It imports nothing of milagro_tls (``-I`` keeps the harness's directory off sys.path), so none
of our suites, messages or extensions are registered in this tlslite; it proves that before
connecting. Jobs arrive as JSON on stdin, one result per job goes out as JSON on stdout:

    job    {"port": int, "mode": "cert" | "anonymous", "max_version": [3, 3] | null, "request": str}
    result {"vanilla": {...}, "completed": bool, "alert": int | null, "alert_name": str | null,
            "error": str | null, "version": [3, 3], "cipher_suite": int, "cipher_name": str,
            "server_certificate_sha256": str | null, "reply": str}
"""
from __future__ import annotations

import hashlib
import json
import socket
import sys

import tlslite
from tlslite import HandshakeSettings, TLSConnection
from tlslite.constants import AlertDescription, CipherSuite
from tlslite.errors import TLSAbruptCloseError, TLSLocalAlert, TLSRemoteAlert
from tlslite.extensions import TLSExtension

#: Our private-use suite range (RFC 5246 §A.5) and our locator extension; none may be known here.
PRIVATE_SUITES = range(0xFF00, 0x10000)
LOCATOR_EXTENSION = 0xFFB7
TIMEOUT = 10.0


def vanilla_evidence() -> dict:
    return {
        "tlslite_version": tlslite.__version__,
        "milagro_imported": any(name.split(".")[0] == "milagro_tls" for name in sys.modules),
        "private_suites_registered": sorted(c for c in CipherSuite.ietfNames if c in PRIVATE_SUITES),
        "locator_extension_registered": any(LOCATOR_EXTENSION in table for table in (
            TLSExtension._universalExtensions, TLSExtension._serverExtensions)),
    }


def run_job(job: dict) -> dict:
    result = {"completed": False, "alert": None, "alert_name": None, "error": None, "version": None,
              "cipher_suite": None, "cipher_name": None, "server_certificate_sha256": None, "reply": ""}
    settings = HandshakeSettings()
    if job.get("max_version"):
        settings.maxVersion = tuple(job["max_version"])
    sock = socket.create_connection(("127.0.0.1", job["port"]), timeout=TIMEOUT)
    connection = TLSConnection(sock)
    try:
        if job["mode"] == "anonymous":
            connection.handshakeClientAnonymous(settings=settings)
        else:
            connection.handshakeClientCert(settings=settings)
        result.update(completed=True, version=list(connection.version),
                      cipher_suite=connection.session.cipherSuite,
                      cipher_name=CipherSuite.ietfNames.get(connection.session.cipherSuite))
        chain = connection.session.serverCertChain
        if chain is not None and chain.x509List:
            result["server_certificate_sha256"] = hashlib.sha256(bytes(chain.x509List[0].bytes)).hexdigest()
        connection.sendall(job["request"].encode())
        reply = b""
        while True:
            data = connection.read()
            if not data:
                break
            reply += bytes(data)
        result["reply"] = reply.decode(errors="replace")
    except (TLSRemoteAlert, TLSLocalAlert) as exc:
        result.update(alert=exc.description, alert_name=AlertDescription.toStr(exc.description),
                      error=f"{type(exc).__name__}: {exc}")
    except (TLSAbruptCloseError, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            connection.close()
        except Exception:      # the server may already be gone; nothing left to report
            sock.close()
    return result


def main() -> int:
    evidence = vanilla_evidence()
    results = [dict(run_job(job), vanilla=evidence) for job in json.load(sys.stdin)]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

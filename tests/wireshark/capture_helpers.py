"""Real captures for the Wireshark tests: HTTP over each suite through a RecordingProxy, with
the key log of the clients, and the tshark binary the tests run."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from milagro_tls.capture.recorder import RecordingProxy
from milagro_tls.ciphersuites.registry import SUITES, SuiteSpec

from helpers.contexts import echo_server, make_context
from helpers.nodes import LockedNode

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:       # plain `pytest` (not `python -m pytest`) leaves the repo root out
    sys.path.insert(0, str(REPO))   # and the tests import interop.wireshark from it


def tshark() -> str:
    """The tshark binary. Missing is a failure, not a skip: ``make test`` installs it
    (SYSTEM_PACKAGES in the Makefile), and these tests are how we know the demo works."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: run `make test` (scripts/ensure-system-packages installs the "
                    "Debian package tshark) or `apt-get install tshark`", pytrace=False)
    return path


def run_tshark(*args) -> str:
    done = subprocess.run([tshark(), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"tshark {args} exited {done.returncode}: {done.stderr}"
    return done.stdout


def request_for(suite: SuiteSpec) -> bytes:
    return f"GET /secret-{suite.code:#06x} HTTP/1.1\r\nHost: echo.example\r\n\r\n".encode()


def response_for(suite: SuiteSpec) -> bytes:
    body = f"the secret of {suite.name}\n".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _http_handler(conn) -> None:
    request = b""
    while b"\r\n\r\n" not in request and (chunk := conn.recv(65536)):
        request += chunk
    code = int(request.split(b"/secret-", 1)[1].split(b" ", 1)[0], 16)
    conn.sendall(response_for(SUITES[code]))


@dataclass
class Capture:
    pcap: Path
    keylog: Path
    suites: list[SuiteSpec]
    #: Per connection, in order: the client's sans-IO connection (randoms, master secret).
    connections: list
    #: The server's port as written in the pcap.
    server_port: int


def capture_http(world, directory: Path, suites: list[SuiteSpec], *, client_identity: str | None = "alice",
                 resume: bool = False, server_port: int | None = 443) -> Capture:
    """One HTTP request and response per suite, each on its own connection through a
    RecordingProxy; with ``resume``, a second, resumed connection per suite."""
    keylog = directory / "capture.keylog"
    server = make_context(world, identity="echo.example", trust=("alice",))
    connections = []
    with server, echo_server(server, handler=_http_handler) as (port, errors):
        with RecordingProxy(("127.0.0.1", port)) as proxy:
            for suite in suites:
                trust = ("echo.example",)
                with make_context(world, identity=client_identity, trust=trust, suites=[suite],
                                  keylog_filename=keylog) as client:
                    session = None
                    for _ in range(2 if resume else 1):
                        raw = socket.create_connection(proxy.address, timeout=10)
                        with client.wrap_socket(raw, server_hostname="echo.example", session=session) as tls:
                            tls.sendall(request_for(suite))
                            reply = b""
                            while chunk := tls.recv(65536):
                                reply += chunk
                            assert reply == response_for(suite)
                            assert tls.session_reused == (session is not None)
                            session = tls.session
                            connections.append(tls._sslobj.connection)
        assert not errors, errors
    pcap = directory / "capture.pcap"
    proxy.write_pcap(pcap, server_port=server_port)
    return Capture(pcap, keylog, list(suites), connections, server_port or port)


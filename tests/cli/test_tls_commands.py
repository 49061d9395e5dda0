"""``milagro serve echo`` and ``milagro connect``, run as the commands a user runs: child processes
on a regtest chain that ``milagro chain serve`` serves, parties made by ``milagro identity create``
and trust files assembled from ``milagro identity show --trust-entry``."""
from __future__ import annotations

import json
import signal
import socket
import ssl
import time

import pytest

from helpers.pki import make_ca_and_leaf
from helpers.served import EchoProcess, ServedChain, milagro, write_trust_file

PARTIES = [("echo.example", "service"), ("alice", "pat"), ("mallory.example", "service")]
CONNECTED = "connected to {where} with {suite} (TLSv1.2)"


class Setup:
    def __init__(self, base) -> None:
        self.base = base
        self.chain = ServedChain(base / "chain", base)
        self.home = base / "home"
        self.locators = {}
        for name, role in PARTIES:
            done = milagro("identity", "create", "--home", self.home, "--chain", self.chain.spec,
                           "--role", role, "--name", name)
            self.locators[name] = json.loads(done.stdout)
        self.trust_files = {label: write_trust_file(base / f"trust-{label}.json", self.home, *names)
                            for label, names in {"server": ("echo.example",), "alice": ("alice",),
                                                 "alice+mallory": ("alice", "mallory.example")}.items()}
        entries = json.loads(self.trust_files["alice+mallory"].read_text())
        self.trust_files["mallory"] = self.base / "trust-mallory.json"
        self.trust_files["mallory"].write_text(json.dumps(entries[1:]))
        self.servers: list[EchoProcess] = []

    def serve(self, *argv, identity: str = "echo.example", trust: str | None = "alice") -> EchoProcess:
        args = ["--identity", identity, *(("--trust", self.trust_files[trust]) if trust else ()), *argv]
        server = EchoProcess(self.chain, self.home, *args, log_dir=self.base, name=f"echo-{len(self.servers)}")
        self.servers.append(server)
        return server

    def connect(self, server: EchoProcess, *argv, identity: str | None = "alice", trust: str = "server",
                server_name: str | None = "echo.example"):
        host, port = server.address
        args = ["connect", "--home", self.home, "--chain", self.chain.spec, "--trust", self.trust_files[trust],
                *(("--identity", identity) if identity else ()),
                *(("--server-name", server_name) if server_name else ()), *argv, f"{host}:{port}"]
        since = server.mark()
        done = milagro(*args, check=False)
        return done, server.wait_for(lambda line: True, timeout=10, since=since).partition(" ")[2]

    def close(self) -> None:
        """SIGTERM each server still running: each must stop cleanly."""
        for server in self.servers:
            if server.alive:
                assert server.stop(signal.SIGTERM) == 0, server.stderr()
                assert server.lines[-1] == "stopped", server.stderr()
        self.chain.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    s = Setup(tmp_path_factory.mktemp("tls-cli"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(setup):
    return setup.serve()


def _where(server) -> str:
    return f"{server.address[0]}:{server.address[1]}"


@pytest.mark.parametrize("suite, name", [("yak", "YAK-BTC-AES128-GCM-SHA256"), ("ecdh", "ECDH-BTC-AES128-GCM-SHA256")])
def test_connect_prints_the_suite_the_verified_server_and_the_echo(setup, server, suite, name):
    done, server_line = setup.connect(server, "--suite", suite, "--send", "hello, echo")
    assert done.returncode == 0, done.stderr
    connected, peer, echo = done.stdout.splitlines()
    assert connected == CONNECTED.format(where=_where(server), suite=name)
    txid = setup.locators["echo.example"]["txid"]
    assert peer.startswith(f"peer echo.example: anchor {txid}:0 at height ") and peer.endswith(" confirmations")
    assert int(peer.split(", ")[1].split()[0]) >= 6
    assert echo == "echo: hello, echo"
    assert server_line == f"{name} TLSv1.2 peer alice"


def test_anonymous_client_is_served_and_reported_as_anonymous(setup, server):
    done, server_line = setup.connect(server, "--send", "x", identity=None)
    assert done.returncode == 0, done.stderr
    assert server_line == "YAK-BTC-AES128-GCM-SHA256 TLSv1.2 peer anonymous"


def test_server_missing_from_the_clients_trust_file_is_refused_and_the_server_keeps_serving(setup, server):
    done, server_line = setup.connect(server, trust="mallory")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("MilagroPeerVerificationError: sent alert bad_certificate (42): ")
    assert "is not in the trust store (expected 'echo.example')" in done.stderr
    assert server_line == "failed: received alert bad_certificate (42)"
    assert setup.connect(server)[0].returncode == 0


def test_server_name_other_than_the_pinned_one_is_refused(setup, server):
    """Without --server-name the name checked is HOST (as ssl's server_hostname): 127.0.0.1 is not pinned."""
    done, _ = setup.connect(server, server_name=None)
    assert done.returncode == 1
    assert "is pinned as 'echo.example', not '127.0.0.1'" in done.stderr


def test_client_missing_from_the_servers_trust_file_gets_bad_certificate(setup, server):
    done, server_line = setup.connect(server, identity="mallory.example")
    assert done.returncode == 1
    assert done.stderr == "MilagroSSLError: received alert bad_certificate (42)\n"
    assert server_line.startswith("failed: sent alert bad_certificate (42): ")
    assert "is not in the trust store" in server_line
    assert setup.connect(server)[0].returncode == 0


def test_require_client_identity_refuses_anonymous_clients(setup):
    server = setup.serve("--require-client-identity")
    done, server_line = setup.connect(server, identity=None)
    assert done.returncode == 1 and done.stderr == "MilagroSSLError: received alert handshake_failure (40)\n"
    assert server_line.startswith("failed: sent alert handshake_failure (40): ")
    done, server_line = setup.connect(server)
    assert done.returncode == 0 and server_line.endswith("peer alice")


def test_allowed_roles_refuse_a_pinned_client_of_another_role(setup):
    server = setup.serve("--allow-role", "service", trust="alice+mallory")
    done, server_line = setup.connect(server)                # alice is pinned as "pat"
    assert done.returncode == 1 and "received alert bad_certificate (42)" in done.stderr
    assert "none of the allowed roles ['service']" in server_line
    done, server_line = setup.connect(server, identity="mallory.example")
    assert done.returncode == 0 and server_line.endswith("peer mallory.example")


def test_one_suite_family_on_each_side_must_meet(setup):
    server = setup.serve("--suite", "ecdh")
    done, server_line = setup.connect(server, "--suite", "yak")
    assert done.returncode == 1 and done.stderr == "MilagroSSLError: received alert handshake_failure (40)\n"
    assert server_line == "failed: sent alert handshake_failure (40): client offered none of our suites"
    done, server_line = setup.connect(server)
    assert done.returncode == 0 and server_line == "ECDH-BTC-AES128-GCM-SHA256 TLSv1.2 peer alice"


def test_fallback_certificate_serves_a_standard_tls_client(setup, tmp_path):
    ca, certfile, keyfile = make_ca_and_leaf(tmp_path, "localhost")
    server = setup.serve("--fallback-cert", certfile, "--fallback-key", keyfile)
    client = ssl.create_default_context(cafile=str(ca))
    since = server.mark()
    with client.wrap_socket(socket.create_connection(server.address, timeout=10), server_hostname="localhost") as tls:
        port = tls.getsockname()[1]
        tls.sendall(b"standard")
        assert tls.recv(100) == b"standard"
        name, version, _ = tls.cipher()
    assert server.line_for(port, since) == f"{name} {version} peer anonymous"
    assert setup.connect(server)[0].returncode == 0       # and our suites still, on the same port


def test_sigint_stops_the_server_cleanly_even_with_a_connection_open(setup):
    """(Every other server here is stopped by SIGTERM, and checked, at the module's end.)"""
    server = setup.serve()
    assert setup.connect(server)[0].returncode == 0
    idle = socket.create_connection(server.address, timeout=5)
    started = time.monotonic()
    assert server.stop(signal.SIGINT) == 0, server.stderr()
    print(f"SIGINT to exit: {time.monotonic() - started:.3f} s")
    assert server.lines[-1] == "stopped" and "Traceback" not in server.stderr()
    assert idle.recv(10) == b""                          # the open connection was closed too
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=5).close()


def test_connect_to_nothing_fails_with_one_line(setup):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = milagro("connect", "--home", setup.home, "--chain", setup.chain.spec, "--trust",
                   setup.trust_files["server"], f"127.0.0.1:{port}", check=False)
    assert done.returncode == 1 and done.stderr.startswith("ConnectionRefusedError: ") and done.stderr.count("\n") == 1


def test_serve_with_an_unknown_identity_fails_with_one_line(setup):
    done = milagro("serve", "echo", "--home", setup.home, "--chain", setup.chain.spec, "--identity", "nobody",
                   "--port", "0", check=False)
    assert done.returncode == 1 and done.stderr.startswith("IdentityError: no identity 'nobody'")
    assert done.stdout == ""

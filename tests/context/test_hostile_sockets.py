"""Hostile input over real sockets, against running ``milagro serve echo`` processes.

Every server-side case of the sans-IO negative table (tests/handshake/test_negative_cases.py)
is replayed over TCP: the client's tampered flights go to the server, which must put exactly
the table's alert record on the wire, close, and then serve a well-behaved client. Then the
transport's own hazards: garbage, wrong content types, oversized records and handshake
messages, peers that stall mid-record (closed within the server's bound, measured here),
and many idle connections held open while a real client is served.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import time

import pytest
from tlslite.constants import AlertDescription as A

from milagro_tls.chain.verify import DEFAULT_MIN_CONFIRMATIONS
from milagro_tls.ciphersuites.registry import DEFAULT_SUITES, select_suites
from milagro_tls.context import Context
from milagro_tls.handshake import Connection, Role
from milagro_tls.handshake.messages import DEFAULT_MAX_STAPLE_SIZE

from conftest import WORLD_PARTIES
from handshake.test_negative_cases import CASES, SERVER
from helpers.handshake import config
from helpers.served import EchoProcess, ServedChain, served_world
from helpers.tls_records import ALERT, APPLICATION_DATA, HANDSHAKE, alert_record, frame
from helpers.wire import read_server_flight, read_until_eof, replay

SERVER_CASES = [pytest.param(*case.values[1:], id=case.id) for case in CASES if case.values[0] == SERVER]
#: The stall bound the short-timeout server runs with, and the slack we allow on top of it
#: (select() wake-up, thread scheduling, a loaded CI machine).
STALL_TIMEOUT = 1.5
SLACK = 1.0


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-sockets")
    served = ServedChain(base / "chain", base)
    yield served
    served.close()


@pytest.fixture(scope="module")
def world(chain):
    """The negative table's world (same parties), anchored through the chain server."""
    world = served_world(chain, chain.directory.parent / "home", WORLD_PARTIES)
    yield world
    world.source.close()


class Servers:
    """One ``milagro serve echo`` per distinct server configuration the table asks for."""

    def __init__(self, chain: ServedChain, world, directory) -> None:
        self.chain, self.world, self.directory = chain, world, directory
        self.running: dict[tuple, EchoProcess] = {}
        self.headers = world.headers()

    def start(self, *argv, name: str) -> EchoProcess:
        key = tuple(map(str, argv))
        if key not in self.running:
            self.running[key] = EchoProcess(self.chain, self.world.home, *argv, log_dir=self.directory,
                                            name=f"{name}-{len(self.running)}")
        return self.running[key]

    def for_config(self, config) -> EchoProcess:
        """The server whose command line gives it exactly ``config``'s options."""
        assert (config.fallback_context is None and not config.alpn_protocols
                and not config.accept_any_anchored_peer_unauthenticated), "not a `serve echo` option"
        argv = ["--identity", config.identity.certificate.name]
        if len(config.trust):
            argv += ["--trust", self._trust_file(config.trust.to_json())]
        if config.suites != DEFAULT_SUITES:
            family = next(f for f in ("ecdh", "yak") if select_suites(f) == config.suites)
            argv += ["--suite", family]
        if config.require_client_identity:
            argv.append("--require-client-identity")
        for role in sorted(config.allowed_client_roles or ()):
            argv += ["--allow-role", role]
        if config.min_confirmations != DEFAULT_MIN_CONFIRMATIONS:
            argv += ["--min-confirmations", config.min_confirmations]
        if config.max_staple_size != DEFAULT_MAX_STAPLE_SIZE:
            argv += ["--max-staple-size", config.max_staple_size]
        return self.start(*argv, name="table")

    def _trust_file(self, entries) -> str:
        text = json.dumps(entries, indent=2)
        path = self.directory / f"trust-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
        path.write_text(text)
        return str(path)

    def default(self, *extra) -> EchoProcess:
        """echo.example, pinning alice: the table's usual server."""
        return self.start("--identity", "echo.example", "--trust", self._trust_file(
            self.world.trust("alice").to_json()), *extra, name="echo")

    def client(self, identity: str | None = "alice") -> Context:
        return Context(identity=self.world.identities[identity] if identity else None,
                       trust=self.world.trust("echo.example"), headers=self.headers)

    def assert_serves(self, server: EchoProcess, identity: str | None = "alice") -> float:
        """A well-behaved client gets its echo; returns the seconds it took (connect to echo)."""
        assert server.alive, server.stderr()
        since = server.mark()
        started = time.perf_counter()
        with self.client(identity) as context, context.wrap_socket(
                socket.create_connection(server.address, timeout=10), server_hostname="echo.example") as tls:
            port = tls.getsockname()[1]
            tls.sendall(b"still serving")
            assert tls.recv(100) == b"still serving"
            elapsed = time.perf_counter() - started
            assert tls.getpeercert()["name"] == "echo.example"
            suite = tls.cipher()[0]
        assert server.line_for(port, since) == f"{suite} TLSv1.2 peer {identity or 'anonymous'}"
        return elapsed

    def stop_all(self) -> None:
        for server in self.running.values():       # all at once; then each must have stopped cleanly
            server.proc.send_signal(signal.SIGTERM)
        for server in self.running.values():
            server.proc.wait(30)                    # (a second SIGTERM while it stops would kill it)
            code = server.stop()
            assert code == 0 and server.lines[-1] == "stopped", server.stderr()


@pytest.fixture(scope="module")
def servers(chain, world, tmp_path_factory):
    pool = Servers(chain, world, tmp_path_factory.mktemp("echo-servers"))
    yield pool
    pool.stop_all()


def _well_behaved_identity(world, config) -> str | None:
    """alice when this server accepts her (pinned, role allowed, deep enough, staple fits), else anonymous."""
    alice = world.identities["alice"]
    entries = config.trust.entries_for(alice.locator)
    accepted = bool(entries) and (config.allowed_client_roles is None
                                  or bool(entries[0].roles & config.allowed_client_roles)) \
        and config.min_confirmations <= DEFAULT_MIN_CONFIRMATIONS \
        and len(alice.certificate_bytes) + len(alice.proof_bytes) <= config.max_staple_size
    assert accepted or not config.require_client_identity
    return "alice" if accepted else None


def _alert_line(alert: int) -> str:
    return f"failed: sent alert {A.toRepr(alert)} ({alert})"


# --- the negative table, over TCP ---------------------------------------------------------
@pytest.mark.parametrize("alert, scenario", SERVER_CASES)
def test_server_refuses_over_tcp_with_the_tables_alert_then_serves_others(world, servers, alert, scenario):
    plan = scenario(world)
    server = servers.for_config(plan.server_config)
    since = server.mark()
    outcome = replay(plan, server.address)
    assert outcome.client_failure is None, outcome.client_failure
    assert outcome.refused_after_flight is not None, "the server completed the handshake"
    assert outcome.refusal == alert_record(alert)       # exactly one alert record, then EOF
    assert outcome.closed_within < SLACK
    assert server.line_for(outcome.client_port, since).startswith(_alert_line(alert))
    servers.assert_serves(server, _well_behaved_identity(world, plan.server_config))


# --- transport-level hostile input ----------------------------------------------------------
def _raw_exchange(server: EchoProcess, payload: bytes, *, timeout: float = 5.0) -> tuple[bytes, bool, float, int]:
    """Send ``payload`` on a plain TCP connection; (reply up to EOF, EOF seen, seconds, port)."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        port = sock.getsockname()[1]
        sock.sendall(payload)
        started = time.monotonic()
        reply, eof = read_until_eof(sock, timeout)
        return reply, eof, time.monotonic() - started, port


GARBAGE = {
    "http-request": b"GET / HTTP/1.1\r\nHost: echo.example\r\n\r\n",
    "random-bytes": b"\x00" + os.urandom(63),
    "sslv2-client-hello": bytes.fromhex("802e0103010015000000100700c0030080010080060040040080020080") + os.urandom(16),
    # More than the server reads at once: it must still get its alert out (lingering close).
    "200-kib-of-0xff": b"\xff" * (200 * 1024),
}


@pytest.mark.parametrize("payload", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_gets_unexpected_message(servers, payload):
    server = servers.default()
    since = server.mark()
    reply, eof, _, port = _raw_exchange(server, payload)
    assert reply == alert_record(A.unexpected_message) and eof
    assert server.line_for(port, since).startswith(_alert_line(A.unexpected_message))
    servers.assert_serves(server)


def _client_hello(servers) -> bytes:
    """A real ClientHello (alice's): the first flight of a well-behaved client."""
    client = Connection(Role.CLIENT, config(servers.world, identity="alice", trust=servers.world.trust("echo.example"),
                                            headers=servers.headers))
    client.start()
    return client.data_to_send()


WRONG_CONTENT_TYPES = {
    "heartbeat-record": (lambda world: frame(24, b"\x01\x00\x10" + b"\x00" * 32), A.unexpected_message),
    "content-type-255": (lambda world: frame(255, b"\x00" * 8), A.unexpected_message),
    "application-data-first": (lambda world: frame(APPLICATION_DATA, b"x" * 32), A.unexpected_message),
    "record-version-2-0": (lambda world: frame(HANDSHAKE, b"\x01\x00\x00\x00", version=b"\x02\x00"),
                           A.protocol_version),
    "empty-handshake-record": (lambda world: frame(HANDSHAKE, b""), A.decode_error),
    "alert-record-of-odd-length": (lambda world: frame(ALERT, b"\x01"), A.decode_error),
}


@pytest.mark.parametrize("make, alert", WRONG_CONTENT_TYPES.values(), ids=WRONG_CONTENT_TYPES.keys())
def test_record_of_the_wrong_content_type_gets_its_alert(world, servers, make, alert):
    server = servers.default()
    since = server.mark()
    reply, eof, _, port = _raw_exchange(server, make(world))
    assert reply == alert_record(alert) and eof
    assert server.line_for(port, since).startswith(_alert_line(alert))
    servers.assert_serves(server)


def test_application_data_in_the_middle_of_the_handshake_gets_unexpected_message(servers):
    server = servers.default()
    since = server.mark()
    with socket.create_connection(server.address, timeout=5) as sock:
        port = sock.getsockname()[1]
        sock.sendall(_client_hello(servers))
        flight, eof = read_server_flight(sock, 1, timeout=5)
        assert not eof and flight[0] == HANDSHAKE
        sock.sendall(frame(APPLICATION_DATA, b"too early"))
        reply, eof = read_until_eof(sock, 5)
    assert reply == alert_record(A.unexpected_message) and eof
    assert server.line_for(port, since).startswith(_alert_line(A.unexpected_message))
    servers.assert_serves(server)


def test_oversized_record_is_refused_from_its_header_alone(servers):
    """A header announcing 65535 bytes: record_overflow at once, not after buffering them."""
    server = servers.default()
    since = server.mark()
    reply, eof, seconds, port = _raw_exchange(server, b"\x16\x03\x03\xff\xff")
    assert reply == alert_record(A.record_overflow) and eof and seconds < SLACK
    assert server.line_for(port, since).startswith(_alert_line(A.record_overflow))
    servers.assert_serves(server)


@pytest.mark.parametrize("length", [131396 + 1, 0xFFFFFF], ids=["one-past-the-largest-client-hello", "16-mib"])
def test_handshake_message_longer_than_any_legal_one_is_refused_from_its_header(servers, length):
    """The 4-byte message header alone is enough: decode_error, nothing buffered."""
    server = servers.default()
    since = server.mark()
    reply, eof, seconds, port = _raw_exchange(server, frame(HANDSHAKE, b"\x01" + length.to_bytes(3, "big")))
    assert reply == alert_record(A.decode_error) and eof and seconds < SLACK
    assert server.line_for(port, since).startswith(_alert_line(A.decode_error))
    servers.assert_serves(server)


# --- stalls: closed within the bound --------------------------------------------------------
def _stalled(server: EchoProcess, payload: bytes) -> tuple[bytes, bool, float, int]:
    """Send ``payload`` then nothing: what the server sends before EOF, and when EOF came."""
    with socket.create_connection(server.address, timeout=5) as sock:
        port = sock.getsockname()[1]
        if payload:
            sock.sendall(payload)
        started = time.monotonic()
        reply, eof = read_until_eof(sock, STALL_TIMEOUT + 10)
        return reply, eof, time.monotonic() - started, port


STALLS = {
    "silent-after-connect": b"",
    "three-bytes-of-a-record-header": b"\x16\x03\x03",
    "half-a-client-hello-record": frame(HANDSHAKE, b"\x01\x00\x00\x40" + b"\x00" * 64)[:40],
    "whole-record-half-a-handshake-message": frame(HANDSHAKE, b"\x01\x00\x00\x40" + b"\x00" * 20),
}


@pytest.mark.parametrize("payload", STALLS.values(), ids=STALLS.keys())
def test_peer_that_stops_mid_handshake_is_closed_within_the_bound(servers, payload):
    server = servers.start("--identity", "echo.example", "--timeout", STALL_TIMEOUT, name="short-timeout")
    since = server.mark()
    reply, eof, seconds, port = _stalled(server, payload)
    print(f"stalled handshake ({len(payload)} bytes) closed after {seconds:.3f} s (bound {STALL_TIMEOUT} s)")
    assert reply == b"" and eof                  # no alert: the peer broke no rule, it is just slow
    assert seconds <= STALL_TIMEOUT + SLACK
    assert server.line_for(port, since) == f"closed: no complete handshake within {STALL_TIMEOUT:g} s"
    servers.assert_serves(server, identity=None)


def test_slow_loris_trickling_a_client_hello_is_closed_within_the_bound(servers):
    """One byte every 0.1 s keeps every read alive; the handshake deadline is for the whole
    handshake, so the server still closes at its bound."""
    server = servers.start("--identity", "echo.example", "--timeout", STALL_TIMEOUT, name="short-timeout")
    since = server.mark()
    hello = _client_hello(servers)
    with socket.create_connection(server.address, timeout=5) as sock:
        port = sock.getsockname()[1]
        started = time.monotonic()
        sent = 0
        try:
            for byte in hello:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.1)
                if time.monotonic() - started > STALL_TIMEOUT + 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply, eof = read_until_eof(sock, STALL_TIMEOUT + 5)
        seconds = time.monotonic() - started
    print(f"slow loris: {sent} of {len(hello)} bytes sent, closed after at most {seconds:.3f} s")
    assert sent < len(hello) and reply == b""
    assert server.line_for(port, since) == f"closed: no complete handshake within {STALL_TIMEOUT:g} s"
    servers.assert_serves(server, identity=None)


def test_established_peer_that_stops_mid_record_is_closed_within_the_bound(servers):
    """After the handshake, half a record: the server times out its read, closes with close_notify."""
    server = servers.start("--identity", "echo.example", "--timeout", STALL_TIMEOUT, name="short-timeout")
    with servers.client(None) as context, context.wrap_socket(
            socket.create_connection(server.address, timeout=5), server_hostname="echo.example") as tls:
        tls.sendall(b"ping")
        assert tls.recv(10) == b"ping"
        socket.socket.sendall(tls, frame(APPLICATION_DATA, b"\x00" * 64)[:30])   # raw: half a record
        started = time.monotonic()
        tls.settimeout(STALL_TIMEOUT + 10)
        reply = b""
        while chunk := socket.socket.recv(tls, 65536):
            reply += chunk
        seconds = time.monotonic() - started
    print(f"established peer stalled mid-record: closed after {seconds:.3f} s (bound {STALL_TIMEOUT} s)")
    assert seconds <= STALL_TIMEOUT + SLACK
    # One protected alert record (close_notify): 8-byte explicit nonce, 2 bytes, 16-byte tag.
    assert reply[:3] == bytes([ALERT, 3, 3]) and len(reply) == 5 + 8 + 2 + 16
    servers.assert_serves(server, identity=None)


# --- many idle connections ------------------------------------------------------------------
IDLE_TCP, IDLE_TLS = 200, 50


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_many_idle_connections_do_not_stop_a_real_client_being_served(servers):
    """200 peers that connect and say nothing, and 50 that finish a handshake and then say
    nothing, all held open (30 s default timeout) while a real client is served."""
    server = servers.default()
    baseline = min(servers.assert_serves(server) for _ in range(3))
    rss_before = _rss_kib(server.proc.pid)
    since = server.mark()
    idle = [socket.create_connection(server.address, timeout=5) for _ in range(IDLE_TCP)]
    with servers.client(None) as context:
        established = [context.wrap_socket(socket.create_connection(server.address, timeout=5),
                                           server_hostname="echo.example") for _ in range(IDLE_TLS)]
    try:
        loaded = min(servers.assert_serves(server) for _ in range(3))
        rss_per_connection = (_rss_kib(server.proc.pid) - rss_before) / (IDLE_TCP + IDLE_TLS)
        print(f"handshake + echo: {baseline * 1000:.1f} ms alone, {loaded * 1000:.1f} ms beside "
              f"{IDLE_TCP} idle TCP and {IDLE_TLS} idle TLS connections; server RSS "
              f"{rss_per_connection:.0f} KiB per idle connection")
        assert loaded < 2.0
        for sock in idle:                      # every one still held open by the server
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        for tls in established:
            tls.settimeout(0.0)
            with pytest.raises(ssl.SSLWantReadError):
                tls.recv(1)
    finally:
        ports = [sock.getsockname()[1] for sock in idle]
        for sock in idle + established:
            sock.close()
    for port in ports:
        assert server.line_for(port, since).startswith("closed before the handshake completed")
    assert server.alive
    servers.assert_serves(server)


def test_a_client_is_served_beside_more_idle_connections_than_fd_setsize(servers):
    """1100 idle connections push the server's next fds past FD_SETSIZE (1024), where select()
    would refuse them (the socket wrapper waits with poll())."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Each process (this one and the server) holds ~1,100 sockets: past FD_SETSIZE is the point.
    assert hard == resource.RLIM_INFINITY or hard >= 1300, \
        f"this test needs 1300 file descriptors per process; raise the hard RLIMIT_NOFILE ({hard})"
    wanted = 2500 if hard == resource.RLIM_INFINITY else min(hard, 2500)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    server = servers.start("--identity", "echo.example", "--max-connections", 2000, name="many")
    idle = []
    try:
        idle = [socket.create_connection(server.address, timeout=5) for _ in range(1100)]
        time.sleep(0.5)                            # the server has accepted them all
        since = server.mark()
        with socket.create_connection(server.address, timeout=10) as raw:
            port = raw.getsockname()[1]
            # Our side blocking (no select()); the server's side has its timeout, as always.
            raw.settimeout(None)
            with contextlib.suppress(ssl.SSLError, OSError), servers.client(None) as context, \
                    context.wrap_socket(raw, server_hostname="echo.example") as tls:
                tls.sendall(b"x")
                tls.recv(1)
        assert server.line_for(port, since) == "YAK-BTC-AES128-GCM-SHA256 TLSv1.2 peer anonymous"
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_over_the_limit_are_closed_at_once_and_slots_come_back(servers):
    """The kernel hands connections to accept() in the order they were made, so the ninth is
    taken after the eight that fill the cap, whatever the machine's load."""
    server = servers.start("--identity", "echo.example", "--max-connections", 8, name="limited")
    since = server.mark()
    held = [socket.create_connection(server.address, timeout=5) for _ in range(8)]
    try:
        reply, eof, seconds, port = _stalled(server, b"")
        assert reply == b"" and eof and seconds < SLACK
        assert server.line_for(port, since) == "closed: over the limit of 8 connections"
    finally:
        held_ports = [sock.getsockname()[1] for sock in held]
        for sock in held:
            sock.close()
    for held_port in held_ports:               # each gave its slot back
        assert server.line_for(held_port, since).startswith("closed before the handshake completed")
    servers.assert_serves(server, identity=None)

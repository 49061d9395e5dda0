"""The negative handshake corpus over real sockets: every named hostile case is sent to a
threaded server (EchoServer) and to an asyncio server (start_server(ssl=ctx)), both over the
Context. Each case asserts the exact alert record on the wire (or none, where the peer broke
off itself), that the server closed the connection and gave its slot back, and that it then
serves a well-behaved client.

The table: the server-side cases of the sans-IO negative table (tests/handshake/
test_negative_cases.py, replayed flight by flight), then raw-record cases written here.
"""
from __future__ import annotations

import json
import os
import socket
import time

import pytest
from tlslite.constants import AlertDescription as A
from tlslite.constants import HandshakeType as H

from milagro_tls.handshake import Connection, ConnectionFailed, Role

from handshake.test_negative_cases import CASES as SANS_IO_CASES, SERVER, _hello
from helpers.handshake import config
from helpers.tls_records import ALERT, APPLICATION_DATA, CCS, HANDSHAKE, alert_record, frame, handshake
from helpers.wire import _drain, _flight_complete, _records, read_until_eof
from hostile.servers import AsyncServer, SyncServer, context_for, serves, wait_until

#: The servers' handshake bound in this table: a case that hung would show as a timeout.
TIMEOUT = 5.0
#: From our last byte to the server's EOF, for a refusal (the alert goes out at once).
SLACK = 1.0


# --- the table ------------------------------------------------------------------------------
class Case:
    def __init__(self, name: str, alert: int | None, *, scenario=None, raw=None):
        self.name, self.alert, self.scenario, self.raw = name, alert, scenario, raw


TABLE: list[Case] = [Case(c.id, c.values[1], scenario=c.values[2]) for c in SANS_IO_CASES if c.values[0] == SERVER]


def _raw(name: str, alert: int | None, *, after_hello: bool = False):
    """A raw case: ``make(world)`` gives the bytes; ``after_hello``: sent after a real
    ClientHello and the server's first flight (the server waits for a key exchange)."""
    def register(make):
        TABLE.append(Case(name, alert, raw=(make, after_hello)))
        return make
    return register


_raw("http-request", A.unexpected_message)(lambda w: b"GET / HTTP/1.1\r\nHost: echo.example\r\n\r\n")
_raw("random-bytes", A.unexpected_message)(lambda w: b"\x00" + os.urandom(63))
_raw("sslv2-client-hello", A.unexpected_message)(
    lambda w: bytes.fromhex("802e0103010015000000100700c0030080010080060040040080020080") + os.urandom(16))
_raw("200-kib-of-0xff", A.unexpected_message)(lambda w: b"\xff" * (200 * 1024))
_raw("heartbeat-record", A.unexpected_message)(lambda w: frame(24, b"\x01\x00\x10" + b"\x00" * 32))
_raw("content-type-255", A.unexpected_message)(lambda w: frame(255, b"\x00" * 8))
_raw("empty-application-data-first", A.unexpected_message)(lambda w: frame(APPLICATION_DATA, b""))
_raw("record-version-2-0", A.protocol_version)(lambda w: frame(HANDSHAKE, b"\x01\x00\x00\x00", version=b"\x02\x00"))
_raw("empty-handshake-record", A.decode_error)(lambda w: frame(HANDSHAKE, b""))
_raw("alert-record-of-odd-length", A.decode_error)(lambda w: frame(ALERT, b"\x01"))
_raw("record-header-announcing-65535-bytes", A.record_overflow)(lambda w: b"\x16\x03\x03\xff\xff")
_raw("client-hello-header-one-past-the-largest", A.decode_error)(
    lambda w: frame(HANDSHAKE, b"\x01" + (131396 + 1).to_bytes(3, "big")))
_raw("client-hello-header-16-mib", A.decode_error)(lambda w: frame(HANDSHAKE, b"\x01\xff\xff\xff"))
_raw("client-key-exchange-before-client-hello", A.unexpected_message)(
    lambda w: frame(HANDSHAKE, handshake(H.client_key_exchange, b"\x21" + b"\x02" * 33)))
_raw("finished-before-client-hello", A.unexpected_message)(lambda w: frame(HANDSHAKE, handshake(H.finished, bytes(12))))
_raw("hello-request-from-a-client", A.unexpected_message)(lambda w: frame(HANDSHAKE, handshake(H.hello_request, b"")))
_raw("handshake-type-255", A.unexpected_message)(lambda w: frame(HANDSHAKE, handshake(255, b"\x00" * 4)))
_raw("five-warning-alerts-in-a-row", A.unexpected_message)(lambda w: frame(ALERT, bytes([1, A.user_canceled]) * 5))
_raw("client-hello-sslv3", A.protocol_version)(lambda w: _hello(w, version=(3, 0)))
_raw("client-hello-tls-1-3-suites-only", A.handshake_failure)(lambda w: _hello(w, suites=(0x1301, 0x1302, 0x1303)))
_raw("alert-interleaved-into-a-fragmented-client-hello", A.unexpected_message)(
    lambda w: frame(HANDSHAKE, _hello(w)[5:40]) + frame(ALERT, bytes([1, A.user_canceled])))
_raw("client-sends-fatal-alert-first", None)(lambda w: alert_record(A.internal_error))
_raw("client-hello-twice", A.unexpected_message, after_hello=True)(lambda w: _hello(w))
_raw("application-data-after-client-hello", A.unexpected_message, after_hello=True)(
    lambda w: frame(APPLICATION_DATA, b"too early"))
_raw("finished-instead-of-key-exchange", A.unexpected_message, after_hello=True)(
    lambda w: frame(HANDSHAKE, handshake(H.finished, bytes(12))))
_raw("key-exchange-header-one-past-the-staple-bound", A.decode_error, after_hello=True)(
    lambda w: frame(HANDSHAKE, b"\x10" + (16384 + 512 + 1).to_bytes(3, "big")))
_raw("change-cipher-spec-of-two-bytes", A.unexpected_message, after_hello=True)(lambda w: frame(CCS, b"\x01\x01"))
_raw("certificate-from-a-client", A.unexpected_message, after_hello=True)(
    lambda w: frame(HANDSHAKE, handshake(H.certificate, b"\x00\x00\x00")))


def test_the_table_has_at_least_forty_named_cases():
    names = [case.name for case in TABLE]
    assert len(names) == len(set(names)) and len(names) >= 40, len(names)


# --- servers, one per (kind, configuration) ----------------------------------------------------
class Pool:
    def __init__(self, world):
        self.world, self.running = world, {}

    def get(self, kind: str, server_config):
        key = (kind, server_config.identity.certificate.name, json.dumps(server_config.trust.to_json()),
               tuple(s.name for s in server_config.suites), server_config.min_confirmations,
               server_config.max_staple_size, server_config.require_client_identity,
               tuple(sorted(server_config.allowed_client_roles or ())))
        if key not in self.running:
            context = context_for(server_config)
            self.running[key] = (SyncServer if kind == "sync" else AsyncServer)(context, timeout=TIMEOUT)
        return self.running[key]

    def close(self):
        for server in self.running.values():
            server.close()
            server.context.close()


@pytest.fixture(scope="module")
def pool(world):
    servers = Pool(world)
    yield servers
    servers.close()


def _default_config(world):
    return config(world, identity="echo.example", trust=world.trust("alice"))


# --- the wire -------------------------------------------------------------------------------
def _reply(sock: socket.socket, flight: int, timeout: float = TIMEOUT + 2) -> tuple[bytes, bool, float]:
    """The server's next flight, or, once an alert or EOF shows, everything up to its EOF.
    After an alert we close our side as a real client does on a fatal alert (asyncio's
    server waits for the peer's next bytes or EOF before it fails the handshake)."""
    data, deadline, started = b"", time.monotonic() + timeout, time.monotonic()
    while time.monotonic() < deadline:
        if any(t == ALERT for t, _ in _records(data)):
            sock.shutdown(socket.SHUT_WR)
            rest, eof = read_until_eof(sock, deadline - time.monotonic())
            return data + rest, eof, time.monotonic() - started
        if flight and _flight_complete(data, flight):
            return data, False, time.monotonic() - started
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True, time.monotonic() - started
        except TimeoutError:
            break
        if not chunk:
            return data, True, time.monotonic() - started
        data += chunk
    return data, False, time.monotonic() - started


def _run_plan(world, plan, address) -> tuple[bytes, bool, float]:
    client = Connection(Role.CLIENT, plan.client_config, server_hostname=plan.server_hostname)
    client.start()
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        for flight in (0, 2):
            data = client.data_to_send()
            if flight in plan.tamper:
                data = plan.tamper[flight](data)
            sock.sendall(data)
            reply, eof, seconds = _reply(sock, flight + 1)
            if eof:
                return reply, eof, seconds
            if flight + 1 in plan.tamper:
                reply = plan.tamper[flight + 1](reply)
            client.receive_data(reply)
            failure = _drain(client)
            assert failure is None, f"our client refused the server: {failure}"
    raise AssertionError("the server completed the handshake")


def _run_raw(world, make, after_hello: bool, address) -> tuple[bytes, bool, float]:
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        if after_hello:
            client = Connection(Role.CLIENT, config(world, identity="alice", trust=world.trust("echo.example")))
            client.start()
            sock.sendall(client.data_to_send())
            flight, eof, _ = _reply(sock, 1)
            assert not eof and flight[0] == HANDSHAKE
        try:
            sock.sendall(make(world))
        except (BrokenPipeError, ConnectionResetError):
            pass      # 200 KiB: the server may have answered and closed before we finished
        return _reply(sock, 0)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
@pytest.mark.parametrize("case", TABLE, ids=[case.name for case in TABLE])
def test_hostile_case_gets_its_alert_and_the_server_serves_the_next_client(world, pool, kind, case):
    if case.scenario is not None:
        plan = case.scenario(world)
        server = pool.get(kind, plan.server_config)
        reply, eof, seconds = _run_plan(world, plan, server.address)
        well_behaved = "alice" if plan.server_config.trust.entries_for(world.identities["alice"].locator) \
            and plan.server_config.allowed_client_roles is None and plan.server_config.min_confirmations < 100 \
            and plan.server_config.max_staple_size >= 16384 else None
    else:
        server = pool.get(kind, _default_config(world))
        reply, eof, seconds = _run_raw(world, *case.raw, server.address)
        well_behaved = "alice"
    expected = alert_record(case.alert) if case.alert is not None else b""
    assert reply == expected and eof, (reply.hex(), eof)
    assert seconds < SLACK + (0.5 if case.name == "200-kib-of-0xff" else 0)
    assert wait_until(lambda: server.open_connections() == 0, 5), "the refused connection kept its slot"
    assert server.alive
    serves(server, world, well_behaved)

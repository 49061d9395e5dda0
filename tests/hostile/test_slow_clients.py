"""Slow and hostile clients against the threaded EchoServer and an asyncio start_server over
the Context: idle and half-sent handshakes are closed at the handshake bound (the whole
handshake, so a slow loris gains nothing by trickling), their slots come back, and while
they hold the server a well-behaved client is served at once.

The bounds: EchoServer ``timeout`` (DEFAULT_TIMEOUT 30 s, per whole handshake and per later
wait; 1 s here); asyncio ``ssl_handshake_timeout`` (asyncio's default 60 s; 1 s here).
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from milagro_tls.echo_server import DEFAULT_TIMEOUT
from milagro_tls.handshake import Connection, Role

from helpers.handshake import config
from helpers.tls_records import ALERT, HANDSHAKE, frame
from helpers.wire import _records, read_until_eof
from hostile.servers import AsyncServer, SyncServer, context_for, serves, wait_until

BOUND = 1.0
SLACK = 1.0
EACH = 10       # stalled peers of each kind, all at once


def _hello(world) -> bytes:
    client = Connection(Role.CLIENT, config(world, identity="alice", trust=world.trust("echo.example")))
    client.start()
    return client.data_to_send()


def _stalls(world) -> dict[str, bytes]:
    hello = _hello(world)
    return {
        "silent-after-connect": b"",
        "three-bytes-of-a-record-header": b"\x16\x03\x03",
        "half-a-client-hello-record": hello[:len(hello) // 2],
        "whole-record-half-a-handshake-message": frame(HANDSHAKE, b"\x01\x00\x00\x40" + b"\x00" * 20),
        "client-hello-then-silence": hello,
    }


@pytest.fixture(params=["sync", "asyncio"])
def server(world, request):
    context = context_for(config(world, identity="echo.example", trust=world.trust("alice")))
    running = (SyncServer if request.param == "sync" else AsyncServer)(context, timeout=BOUND)
    yield running
    running.close()
    context.close()


def _trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Slow loris: one byte every 50 ms, every read alive, the handshake never done."""
    try:
        for byte in data:
            if stop.wait(0.05):
                return
            sock.sendall(bytes([byte]))
    except OSError:
        pass


def test_the_default_bounds():
    assert DEFAULT_TIMEOUT == 30.0
    import asyncio.constants
    assert asyncio.constants.SSL_HANDSHAKE_TIMEOUT == 60.0


def test_stalled_and_trickling_handshakes_are_closed_at_the_bound_while_others_are_served(world, server):
    baseline = serves(server, world)
    stalls = _stalls(world)
    peers: list[tuple[str, socket.socket]] = []
    stop = threading.Event()
    tricklers = []
    started = time.monotonic()
    for name, payload in stalls.items():
        for _ in range(EACH):
            sock = socket.create_connection(server.address, timeout=5)
            if payload:
                sock.sendall(payload)
            peers.append((name, sock))
    for _ in range(EACH):
        sock = socket.create_connection(server.address, timeout=5)
        thread = threading.Thread(target=_trickle, args=(sock, _hello(world), stop), daemon=True)
        thread.start()
        tricklers.append(thread)
        peers.append(("slow-loris", sock))
    try:
        assert wait_until(lambda: server.open_connections() >= len(peers), 2)
        loaded = max(serves(server, world) for _ in range(3))      # beside 60 held connections
        closed_after = {}
        for name, sock in peers:
            reply, eof = read_until_eof(sock, BOUND + SLACK + 2)
            # No alert: slow is no offence. (After a whole ClientHello: the server's first flight.)
            assert eof and (reply == b"" or (name == "client-hello-then-silence" and reply[0] == HANDSHAKE
                                             and ALERT not in {t for t, _ in _records(reply)})), (name, reply.hex())
            closed_after[name] = max(closed_after.get(name, 0.0), time.monotonic() - started)
    finally:
        stop.set()
        for _, sock in peers:
            sock.close()
    print(f"{server.kind}: handshake + echo {baseline * 1000:.0f} ms alone, {loaded * 1000:.0f} ms beside "
          f"{len(peers)} stalled peers; last closed after " +
          ", ".join(f"{name} {seconds:.2f} s" for name, seconds in closed_after.items()))
    assert loaded < 2.0
    assert all(seconds <= BOUND + SLACK + 0.5 for seconds in closed_after.values()), closed_after
    assert wait_until(lambda: server.open_connections() == 0, 2)        # every slot back
    serves(server, world)
    if server.kind == "sync":
        reports = [line for line in server.lines if "closed: no complete handshake" in line]
        assert len(reports) >= len(peers)


def test_a_refused_peer_that_stays_silent_is_closed_by_the_bound(world, server):
    """After our alert the peer neither reads nor closes: the threaded server closes at once
    (lingering close, FIN first); asyncio fails the handshake on the peer's next bytes or EOF,
    so there the handshake bound is what closes it."""
    with socket.create_connection(server.address, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        reply, eof = read_until_eof(sock, BOUND + SLACK + 2)
        seconds = time.monotonic() - started
    print(f"{server.kind}: refused silent peer closed after {seconds:.2f} s")
    assert eof and reply == bytes.fromhex("1503030002020a")       # fatal unexpected_message
    assert seconds <= BOUND + SLACK
    assert wait_until(lambda: server.open_connections() == 0, 2)
    serves(server, world)


def test_sync_server_slots_are_capped_and_come_back_after_the_bound(world):
    context = context_for(config(world, identity="echo.example", trust=world.trust("alice")))
    server = SyncServer(context, timeout=BOUND, max_connections=4)
    try:
        held = [socket.create_connection(server.address, timeout=5) for _ in range(4)]
        assert wait_until(lambda: server.open_connections() == 4, 2)
        with socket.create_connection(server.address, timeout=5) as extra:
            port = extra.getsockname()[1]
            reply, eof = read_until_eof(extra, SLACK)
        assert reply == b"" and eof
        assert server.line_for(port) == "closed: over the limit of 4 connections"
        started = time.monotonic()
        assert wait_until(lambda: server.open_connections() == 0, BOUND + SLACK)
        assert time.monotonic() - started <= BOUND + SLACK
        serves(server, world)
        for sock in held:
            sock.close()
    finally:
        server.close()
        context.close()

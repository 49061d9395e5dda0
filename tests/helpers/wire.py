"""The client's side of a hostile-handshake plan (tests/handshake/hostile.py), replayed to a real
server over TCP, and raw-socket reads of what the server puts on the wire.

The client is the sans-IO Connection of the plan, its flights rewritten by the plan's tamper
functions exactly as in memory; the server is whatever listens at ``address``. We read the
server's bytes ourselves, record by record, so a test sees them as they were on the wire.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from milagro_tls.handshake import NEED_DATA, Connection, ConnectionFailed, HandshakeComplete, Role

from helpers.tls_records import ALERT, CCS, HANDSHAKE

SERVER_HELLO_DONE = 14


@dataclass
class WireOutcome:
    client_port: int
    #: The client flight (0 or 2) after which the server stopped, or None if it never did.
    refused_after_flight: int | None
    #: Every byte the server sent after that flight, up to its EOF.
    refusal: bytes
    #: Seconds from our flight's last byte to the server's EOF.
    closed_within: float | None
    #: Set when our own (sans-IO) client refused the server's flight instead.
    client_failure: ConnectionFailed | None = None


def read_until_eof(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """(what arrived, whether EOF came) within ``timeout`` seconds."""
    data, deadline = b"", time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _records(data: bytes):
    """Complete (type, payload) records at the start of ``data``."""
    pos = 0
    while pos + 5 <= len(data):
        content_type, _, length = struct.unpack_from("!B2sH", data, pos)
        if pos + 5 + length > len(data):
            return
        yield content_type, data[pos + 5:pos + 5 + length]
        pos += 5 + length


def _flight_complete(data: bytes, flight: int) -> bool:
    if flight == 1:       # ServerHello .. ServerHelloDone, all plaintext handshake records
        payload = b"".join(p for t, p in _records(data) if t == HANDSHAKE)
        pos = 0
        while pos + 4 <= len(payload):
            length = int.from_bytes(payload[pos + 1:pos + 4], "big")
            if payload[pos] == SERVER_HELLO_DONE and pos + 4 + length <= len(payload):
                return True
            pos += 4 + length
        return False
    types = [t for t, _ in _records(data)]      # flight 3: ChangeCipherSpec, then Finished
    return CCS in types and len(types) > types.index(CCS) + 1


def read_server_flight(sock: socket.socket, flight: int, timeout: float) -> tuple[bytes, bool]:
    """The server's whole next flight, or (after an alert or EOF) everything up to its EOF."""
    data, deadline = b"", time.monotonic() + timeout
    while True:
        if any(t == ALERT for t, _ in _records(data)):
            rest, eof = read_until_eof(sock, deadline - time.monotonic())
            return data + rest, eof
        if _flight_complete(data, flight):
            return data, False
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def _drain(client: Connection) -> ConnectionFailed | None:
    while True:
        event = client.next_event()
        if isinstance(event, ConnectionFailed):
            return event
        if event is NEED_DATA or isinstance(event, HandshakeComplete):
            return None


def replay(plan, address, *, timeout: float = 10.0) -> WireOutcome:
    """Run ``plan``'s client (and its tampering) against the server at ``address``."""
    client = Connection(Role.CLIENT, plan.client_config, server_hostname=plan.server_hostname)
    client.start()
    with socket.create_connection(address, timeout=timeout) as sock:
        port = sock.getsockname()[1]
        for flight in (0, 2):
            data = client.data_to_send()
            if flight in plan.tamper:
                data = plan.tamper[flight](data)
            sock.sendall(data)
            sent = time.monotonic()
            reply, eof = read_server_flight(sock, flight + 1, timeout)
            if eof:
                return WireOutcome(port, flight, reply, time.monotonic() - sent)
            if flight + 1 in plan.tamper:
                reply = plan.tamper[flight + 1](reply)
            client.receive_data(reply)
            if (failure := _drain(client)) is not None:
                return WireOutcome(port, None, b"", None, failure)
        return WireOutcome(port, None, b"", None)

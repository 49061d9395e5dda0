"""Read and rewrite TLS records and handshake messages on the wire, for hostile-input tests."""
from __future__ import annotations

import struct

ALERT, HANDSHAKE, CCS, APPLICATION_DATA = 21, 22, 20, 23


def records(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        content_type, _, length = struct.unpack_from("!B2sH", data, pos)
        out.append((content_type, data[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return out


def frame(content_type: int, payload: bytes, version: bytes = b"\x03\x03") -> bytes:
    return struct.pack("!B2sH", content_type, version, len(payload)) + payload


def handshake_messages(payload: bytes) -> list[bytes]:
    """Whole handshake messages (header included) from concatenated handshake payloads."""
    out, pos = [], 0
    while pos < len(payload):
        length = int.from_bytes(payload[pos + 1:pos + 4], "big")
        out.append(payload[pos:pos + 4 + length])
        pos += 4 + length
    return out


def handshake(message_type: int, body: bytes) -> bytes:
    return bytes([message_type]) + len(body).to_bytes(3, "big") + body


def alert_record(description: int, level: int = 2) -> bytes:
    return frame(ALERT, bytes([level, description]))


def plaintext_flight(data: bytes) -> tuple[list[bytes], bytes]:
    """Split a flight into its plaintext handshake messages and whatever follows (CCS...)."""
    payload, pos = b"", 0
    while pos < len(data) and data[pos] == HANDSHAKE:
        length = int.from_bytes(data[pos + 3:pos + 5], "big")
        payload += data[pos + 5:pos + 5 + length]
        pos += 5 + length
    return handshake_messages(payload), data[pos:]


def reframe(messages: list[bytes]) -> bytes:
    """Handshake messages as records of at most 2^14 bytes."""
    payload = b"".join(messages)
    return b"".join(frame(HANDSHAKE, payload[i:i + 16384]) for i in range(0, len(payload), 16384))

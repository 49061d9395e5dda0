"""A decryptable DEMO COPY of a capture: stock Wireshark decrypts our suites with the key log.

    python -m interop.wireshark.demo_copy IN.pcap OUT.pcapng

Wireshark's table of suites is compiled in (packet-tls-utils.c), so it names ours "Unknown
(0xff10)" and refuses to decrypt them even with the key log ("ssl_set_cipher can't find
cipher suite"). Our record protection is the standard AEAD construction of each cipher byte
for byte (ciphersuites/registry.py), so a copy that claims a standard ECDHE suite with the
same protection and PRF decrypts with the same key log (tlslite-integration.md §6):

    AES-128-GCM, SHA-256 PRF        -> 0xC02B TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    AES-256-GCM, SHA-384 PRF        -> 0xC02C TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    ChaCha20-Poly1305, SHA-256 PRF  -> 0xCCA9 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256

For that claim to hold together, the key exchanges must be in the shape Wireshark's ECDHE
parser reads (RFC 8422 §5.4, §5.7); Wireshark stops decrypting a direction whose
ClientKeyExchange does not parse as one. Everything after our point is kept, opaque:

    ServerKeyExchange  reshaped: ECParameters {curve_type = named_curve (3), secp256k1 (22)},
                       our point, then a "signature" (algorithm 0x0403, a placeholder) whose
                       bytes are the rest of our message: the Schnorr proof (YAK) and the staple
    ClientKeyExchange  unchanged: ours already starts with ``opaque point<1..2^8-1>``, which is
                       ECDHE's ``ECPoint``; the proof and staple after it stay there, trailing
                       bytes that Wireshark 4.0 leaves undecoded (tests/wireshark checks both)

Every other byte is kept: the ClientHello, ServerHello extensions, ChangeCipherSpec, and every
encrypted record (Finished, application data, alerts) byte for byte. The Finished no longer
matches the changed handshake, which does not matter to a reader that has the master secret
from the key log. The TCP stream is rebuilt with consistent sequence numbers
(``milagro_tls.capture.pcap``), as a pcapng whose every packet carries the comment
"DEMO TRANSFORMATION: not the bytes on the wire". Use the ORIGINAL capture for anything that
claims to show the protocol; the Lua dissector (interop/wireshark/milagro.lua) reads that one.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tlslite.constants import ContentType, HandshakeType
from tlslite.utils.codec import Parser, Writer

from milagro_tls.capture.pcap import write_conversations
from milagro_tls.ciphersuites.registry import SUITES, BulkCipher, SuiteSpec

LABEL = "DEMO TRANSFORMATION: not the bytes on the wire"
#: The standard ECDHE suite whose record protection and PRF equal each of our bulk ciphers'.
STANDARD_SUITE = {BulkCipher.AES_128_GCM: 0xC02B, BulkCipher.AES_256_GCM: 0xC02C,
                  BulkCipher.CHACHA20_POLY1305: 0xCCA9}
STANDARD_NAME = {0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}
#: RFC 8422 §5.4 ECCurveType.named_curve, and secp256k1's NamedCurve (RFC 4492 §5.1.1).
NAMED_CURVE, SECP256K1 = 3, 22
#: A placeholder SignatureAndHashAlgorithm (ecdsa_secp256r1_sha256): nothing signs anything here.
PLACEHOLDER_SIGNATURE_ALGORITHM = (4, 3)
_MAX_RECORD = 2 ** 14                      # RFC 5246 §6.2.1 plaintext fragment limit
_RECORD_HEADER, _HANDSHAKE_HEADER = 5, 4


def standard_suite_for(suite: SuiteSpec) -> int:
    return STANDARD_SUITE[suite.cipher]


@dataclass
class ConnectionCopy:
    """What the copy changed in one TCP connection."""
    client: tuple[str, int]
    server: tuple[str, int]
    suite: SuiteSpec | None = None                 # ours, from the ServerHello; None: left alone
    changes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.client[0]}:{self.client[1]} -> {self.server[0]}:{self.server[1]}"
        if self.suite is None:
            return f"{where}: no Bitcoin suite, copied unchanged"
        return f"{where}: " + "; ".join(self.changes)


# --- one direction of a TLS stream ------------------------------------------------------------
@dataclass
class _Record:
    end: int                 # offset in the original stream just past this record
    data: bytes              # the record as it goes into the copy


def _handshake_message(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _records(content_type: int, version: bytes, payload: bytes) -> bytes:
    return b"".join(bytes([content_type]) + version + len(chunk).to_bytes(2, "big") + chunk
                    for chunk in (payload[i:i + _MAX_RECORD] for i in range(0, len(payload), _MAX_RECORD)))


def _rewrite_direction(stream: bytes, rewrite_message) -> tuple[list[_Record], bytes]:
    """The records of one direction, each plaintext handshake message passed through
    ``rewrite_message(type, body) -> body``. Records after a ChangeCipherSpec, and any record
    that is not a handshake record, are kept byte for byte. Returns the records and the bytes
    after the last whole record (a capture cut short), which are kept as they are."""
    records, offset, encrypted, pending = [], 0, False, b""
    while offset + _RECORD_HEADER <= len(stream):
        content_type, version = stream[offset], stream[offset + 1:offset + 3]
        end = offset + _RECORD_HEADER + int.from_bytes(stream[offset + 3:offset + 5], "big")
        if end > len(stream):
            break
        original = stream[offset:end]
        if encrypted or content_type != ContentType.handshake:
            records.append(_Record(end, original))
            encrypted = encrypted or content_type == ContentType.change_cipher_spec
        else:
            # Handshake messages may span records (RFC 5246 §6.2.1): collect whole messages.
            pending += original[_RECORD_HEADER:]
            messages = b""
            while len(pending) >= _HANDSHAKE_HEADER:
                length = int.from_bytes(pending[1:4], "big")
                if len(pending) < _HANDSHAKE_HEADER + length:
                    break
                msg_type, body = pending[0], pending[_HANDSHAKE_HEADER:_HANDSHAKE_HEADER + length]
                messages += _handshake_message(msg_type, rewrite_message(msg_type, body))
                pending = pending[_HANDSHAKE_HEADER + length:]
            if messages:
                records.append(_Record(end, _records(content_type, version, messages)))
        offset = end
    return records, stream[offset:]


# --- the messages the copy changes or checks ---------------------------------------------------
def _relabel_server_hello(body: bytes, copy: ConnectionCopy) -> bytes:
    parser = Parser(bytearray(body))
    parser.getFixBytes(2 + 32)                        # server_version, random
    parser.getVarBytes(1)                             # session_id
    suite_at = parser.index
    code = int.from_bytes(body[suite_at:suite_at + 2], "big")
    if code not in SUITES:
        return body
    copy.suite = SUITES[code]
    standard = standard_suite_for(copy.suite)
    copy.changes.append(f"ServerHello {code:#06x} {copy.suite.name} relabelled {standard:#06x} "
                        f"{STANDARD_NAME[standard]}")
    return body[:suite_at] + standard.to_bytes(2, "big") + body[suite_at + 2:]


def _point_and_rest(body: bytes) -> tuple[bytes, bytes]:
    """Our key-exchange messages all start with ``opaque point<1..2^8-1>`` (handshake/messages.py)."""
    parser = Parser(bytearray(body))
    point = bytes(parser.getVarBytes(1))
    if not point:
        raise ValueError("a key exchange message without a point")
    return point, body[1 + len(point):]


def _reshape_server_key_exchange(body: bytes, copy: ConnectionCopy) -> bytes:
    point, rest = _point_and_rest(body)
    writer = Writer()
    writer.add(NAMED_CURVE, 1)
    writer.add(SECP256K1, 2)
    writer.add_var_bytes(point, 1)
    writer.add(PLACEHOLDER_SIGNATURE_ALGORITHM[0], 1)
    writer.add(PLACEHOLDER_SIGNATURE_ALGORITHM[1], 1)
    writer.add_var_bytes(rest, 2)
    copy.changes.append(f"ServerKeyExchange as ECDHE (secp256k1 point, proof/staple of {len(rest)} bytes as "
                        f"the signature)")
    return bytes(writer.bytes)


def _check_client_key_exchange(body: bytes, copy: ConnectionCopy) -> bytes:
    """Kept as it is: it already starts with the ``point<1..255>`` Wireshark's ECDHE parser reads,
    and Wireshark 4.0 leaves the bytes after it (proof, staple) undecoded without complaint;
    cutting them to a bare point would drop the staple from the copy."""
    point, rest = _point_and_rest(body)
    copy.changes.append(f"ClientKeyExchange unchanged (its point parses as ECDHE; {len(rest)} bytes of "
                        f"proof/staple after it)")
    return body


def _server_rewriter(copy: ConnectionCopy):
    def rewrite(msg_type: int, body: bytes) -> bytes:
        if msg_type == HandshakeType.server_hello:
            return _relabel_server_hello(body, copy)
        if msg_type == HandshakeType.server_key_exchange and copy.suite is not None:
            return _reshape_server_key_exchange(body, copy)
        return body
    return rewrite


def _client_rewriter(copy: ConnectionCopy):
    def rewrite(msg_type: int, body: bytes) -> bytes:
        if msg_type == HandshakeType.client_key_exchange and copy.suite is not None:
            return _check_client_key_exchange(body, copy)
        return body
    return rewrite


# --- whole TCP connections --------------------------------------------------------------------
@dataclass
class _Connection:
    client: tuple[str, int]
    server: tuple[str, int]
    #: (from the client?, offset in that direction's stream, bytes): segments in capture order.
    segments: list[tuple[bool, int, bytes]] = field(default_factory=list)
    next_seq: dict = field(default_factory=dict)
    streams: dict = field(default_factory=lambda: {True: b"", False: b""})


def _read_connections(path: Path) -> list[_Connection]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    active: dict[frozenset, _Connection] = {}        # by 4-tuple; a new SYN starts a new one
    connections: list[_Connection] = []
    for packet in rdpcap(str(path)):
        if TCP not in packet or (IP not in packet and IPv6 not in packet):
            continue
        network = packet[IP] if IP in packet else packet[IPv6]
        tcp = packet[TCP]
        source, destination = (network.src, tcp.sport), (network.dst, tcp.dport)
        key = frozenset((source, destination))
        syn = tcp.flags.S and not tcp.flags.A
        if key not in active or (syn and active[key].segments):
            # The SYN's sender is the client; without one, the first sender is taken for it.
            active[key] = _Connection(client=source, server=destination)
            connections.append(active[key])
        connection = active[key]
        from_client = source == connection.client
        # The segment's own bytes, never bytes(tcp.payload): once scapy's TLS layer is loaded
        # (milagro_tls.capture.scapy_suites), port 443 payloads are dissected as TLS, and that
        # rebuilds them from fields instead of returning what was captured.
        payload = bytes(tcp.original[tcp.dataofs * 4:])
        if tcp.flags.S:
            connection.next_seq[from_client] = (tcp.seq + 1) & 0xFFFFFFFF
            continue
        if not payload:
            continue
        expected = connection.next_seq.setdefault(from_client, tcp.seq)
        skip = (expected - tcp.seq) & 0xFFFFFFFF
        if skip >= 2 ** 31:
            raise ValueError(f"{path}: a segment is missing from {source} (the capture lost bytes)")
        if skip >= len(payload):
            continue                                   # a retransmission
        payload = payload[skip:]
        connection.segments.append((from_client, len(connection.streams[from_client]), payload))
        connection.streams[from_client] += payload
        connection.next_seq[from_client] = (expected + len(payload)) & 0xFFFFFFFF
    return connections


def _pieces(connection: _Connection) -> list[tuple[bool, int, int]]:
    """The connection's segments as (from the client?, start, end) ranges of their direction's stream."""
    return [(from_client, offset, offset + len(payload)) for from_client, offset, payload in connection.segments]


def _copy_connection(connection: _Connection) -> tuple[list[tuple[bool, bytes]], ConnectionCopy]:
    copy = ConnectionCopy(connection.client, connection.server)
    # The server's direction first: its ServerHello says which suite the ClientKeyExchange belongs to.
    server_records, server_tail = _rewrite_direction(connection.streams[False], _server_rewriter(copy))
    client_records, client_tail = _rewrite_direction(connection.streams[True], _client_rewriter(copy))
    records = {True: (client_records, client_tail), False: (server_records, server_tail)}
    conversation = []
    taken = {True: 0, False: 0}
    for from_client, start, end in _pieces(connection):
        direction_records, tail = records[from_client]
        data = b""
        # A record goes out in the segment that carried its last byte.
        while taken[from_client] < len(direction_records) and direction_records[taken[from_client]].end <= end:
            data += direction_records[taken[from_client]].data
            taken[from_client] += 1
        if end == len(connection.streams[from_client]):
            data += tail
        if data:
            conversation.append((from_client, data))
    return conversation, copy


def make_demo_copy(capture: str | Path, out: str | Path) -> list[ConnectionCopy]:
    """Write the decryptable demo copy of ``capture`` to ``out`` (pcapng); returns, per TCP
    connection, what was changed."""
    capture, out = Path(capture), Path(out)
    if out.resolve() == capture.resolve():
        raise ValueError("the demo copy must not overwrite the capture it is made from")
    connections = [_copy_connection(connection) for connection in _read_connections(capture)]
    comments = [[LABEL, f"milagro demo copy of {capture.name}: {copy.describe()}"] for _, copy in connections]
    write_conversations(out, [(conversation, copy.client, copy.server) for conversation, copy in connections],
                        comments=comments)
    return [copy for _, copy in connections]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop.wireshark.demo_copy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", type=Path, help="the capture (pcap or pcapng) of milagro connections")
    parser.add_argument("out", type=Path, help="the demo copy to write (pcapng, whatever its name)")
    args = parser.parse_args(argv)
    try:
        copies = make_demo_copy(args.capture, args.out)
    except (OSError, ValueError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{LABEL}: {args.out} is a demo copy of {args.capture} that stock Wireshark can decrypt with the "
          f"key log; the Bitcoin suites are relabelled and their key exchanges reshaped")
    for copy in copies:
        print(f"  {copy.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

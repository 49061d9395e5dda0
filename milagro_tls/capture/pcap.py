"""Write a TCP conversation we took part in as a valid Ethernet/IPv4/TCP pcap (scapy ``wrpcap``).

No capture privileges are needed: the bytes are those a connection sent and received (see
``recorder.py``), framed as a TCP connection with a three-way handshake, consistent sequence and
acknowledgement numbers, segments of at most one MSS, and a FIN from each side. Several
connections go into one file one after the other, as a demo makes them.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap, wrpcapng

#: The usual Ethernet MSS: 1500 − 20 (IPv4) − 20 (TCP).
MSS = 1460
_CLIENT_MAC, _SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
#: Where the first connection of a file starts (November 2023), and the pause between two.
START_TIME = 1_700_000_000.0
_GAP = 0.01

Conversation = Sequence[tuple[bool, bytes]]
Endpoint = tuple[str, int]


def conversation_packets(conversation: Iterable[tuple[bool, bytes]], *, client: tuple[str, int],
                         server: tuple[str, int], start_time: float = START_TIME, step: float = 0.0005):
    """Packets for ``conversation``: (sent by the client?, bytes) pieces in the order they happened."""
    (client_ip, client_port), (server_ip, server_port) = client, server
    seq = {True: 1000, False: 5000}          # initial sequence numbers of client and server
    clock = [start_time]

    def packet(from_client: bool, flags: str, payload: bytes = b""):
        src, dst = (client, server) if from_client else (server, client)
        macs = (_CLIENT_MAC, _SERVER_MAC) if from_client else (_SERVER_MAC, _CLIENT_MAC)
        network = IPv6 if ":" in src[0] else IP
        frame = (Ether(src=macs[0], dst=macs[1]) / network(src=src[0], dst=dst[0])
                 / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq[from_client],
                       ack=seq[not from_client] if "A" in flags else 0, window=65535))
        if payload:
            frame = frame / payload
        frame.time = clock[0]
        clock[0] += step
        return frame

    packets = [packet(True, "S")]
    seq[True] += 1
    packets.append(packet(False, "SA"))
    seq[False] += 1
    packets.append(packet(True, "A"))
    for from_client, data in conversation:
        for offset in range(0, len(data), MSS):
            chunk = data[offset:offset + MSS]
            packets.append(packet(from_client, "PA", chunk))
            seq[from_client] += len(chunk)
        packets.append(packet(not from_client, "A"))
    for from_client in (True, False):
        packets.append(packet(from_client, "FA"))
        seq[from_client] += 1
    packets.append(packet(True, "A"))
    return packets


def write_pcap(path: str | Path, conversation: Iterable[tuple[bool, bytes]], *,
               client: tuple[str, int] = ("127.0.0.1", 50000), server: tuple[str, int] = ("127.0.0.1", 443)) -> None:
    """Write ``conversation`` as a pcap file. Port 443 by default, where Wireshark looks for TLS."""
    wrpcap(str(path), conversation_packets(conversation, client=client, server=server))


def write_conversations(path: str | Path, connections: Iterable[tuple[Conversation, Endpoint, Endpoint]], *,
                        comments: Sequence[Sequence[str]] | None = None) -> int:
    """Write several connections, each (conversation, client, server), one after the other into
    one pcap file; returns how many packets it holds. Give each connection its own client port:
    Wireshark tells TCP connections apart by their addresses and ports.

    With ``comments`` (one list per connection) the file is pcapng instead, and every packet of
    a connection carries that connection's comments (Wireshark shows them as packet comments,
    ``frame.comment``); pcap has no place for them."""
    packets, start = [], START_TIME
    for index, (conversation, client, server) in enumerate(connections):
        framed = conversation_packets(conversation, client=client, server=server, start_time=start)
        if comments is not None:
            for frame in framed:
                frame.comments = [text.encode() for text in comments[index]]
        packets += framed
        start = float(packets[-1].time) + _GAP
    (wrpcap if comments is None else wrpcapng)(str(path), packets)
    return len(packets)

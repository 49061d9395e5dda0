"""A loopback TCP proxy that records what each connection carries, for ``pcap.write_pcap``.

Point a client at the proxy instead of the server: every byte goes through unchanged, and each
connection's bytes are kept in order as (sent by the client?, bytes) pieces.
"""
from __future__ import annotations

import socket
import threading


class RecordingProxy:
    def __init__(self, target: tuple[str, int], *, listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.target = target
        self._listener = socket.create_server(listen)
        self.address = self._listener.getsockname()[:2]
        self.conversations: list[list[tuple[bool, bytes]]] = []
        #: Per connection: (our end, the server's end) of the upstream TCP connection, the one
        #: whose addresses the server saw (and one address family, for the pcap).
        self.endpoints: list[tuple[tuple[str, int], tuple[str, int]]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepter = threading.Thread(target=self._accept_loop, name="recording-proxy", daemon=True)
        self._accepter.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()             # the client sees the refusal as an EOF
                continue
            conversation: list[tuple[bool, bytes]] = []
            with self._lock:
                self.conversations.append(conversation)
                self.endpoints.append((upstream.getsockname()[:2], upstream.getpeername()[:2]))
            for source, sink, from_client in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._relay, args=(source, sink, from_client, conversation),
                                          daemon=True)
                self._threads.append(thread)
                thread.start()

    def _relay(self, source: socket.socket, sink: socket.socket, from_client: bool, conversation) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    conversation.append((from_client, data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def write_pcap(self, path, *, server_port: int | None = None) -> int:
        """Write every connection carried so far into one pcap; returns the packet count.
        ``server_port`` relabels the server's port (443 lets Wireshark find TLS without
        ``-d tcp.port==N,tls``); None keeps the real one."""
        from .pcap import write_conversations     # scapy is imported only when a pcap is written
        with self._lock:
            connections = [(list(conversation), client, server if server_port is None else (server[0], server_port))
                           for conversation, (client, server) in zip(self.conversations, self.endpoints)]
        return write_conversations(path, connections)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting and wait for the relays to see both ends close."""
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout)

    def __enter__(self) -> "RecordingProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

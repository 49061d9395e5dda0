"""Coverage-guided fuzzing (atheris 3.0.0, libFuzzer) of the sans-IO handshake.

A fresh ``milagro_tls.handshake.Connection`` (server or client, by the input's first byte) is fed
the rest of the input in chunks and drained of events. Seeds are the real flights of an anchored
YAK-BTC/ECDH-BTC handshake (client with a staple, server with a staple) on an embedded regtest
chain built in a temporary directory, so mutations start from messages that parse.

The contract checked: whatever arrives, the connection fails with the alert its HandshakeError
names, never internal_error (an unexpected exception inside the library) and never an exception
out of receive_data/next_event. A violation is a crash: libFuzzer writes the input to
crash-<sha1> in the working directory and the process exits non-zero.

    .venv/bin/python benchmarks/fuzz_handshake.py --seconds 600      # a long run
tests/fuzz/test_fuzz_handshake.py runs it for MILAGRO_FUZZ_HANDSHAKE_SECONDS (default 10).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import atheris

# Instrument the code under test for coverage feedback (only what is imported in this block).
with atheris.instrument_imports(include=["milagro_tls.handshake", "milagro_tls.identity", "milagro_tls.chain.proof",
                                         "milagro_tls.chain.verify", "milagro_tls.ciphersuites", "tlslite"]):
    from milagro_tls.handshake import NEED_DATA, Connection, ConnectionDead, HandshakeConfig, Role
    from milagro_tls.handshake.events import ConnectionClosed, ConnectionFailed
    from tlslite.constants import AlertDescription

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.trust import TrustEntry, TrustStore


class Finding(Exception):
    """The handshake broke its contract on this input."""


def build_world(base: Path):
    source = EmbeddedSource.open(base / "chain")
    source.mine(110)
    server = Party.create(base / "home", source, role="service", name="echo.example")
    client = Party.create(base / "home", source, role="pat", name="alice")
    headers = HeaderChain(":memory:", source.network)
    headers.sync_from(source)
    trust = TrustStore([TrustEntry.from_json(server.trust_entry(None)), TrustEntry.from_json(client.trust_entry(None))])
    server_config = HandshakeConfig(headers=headers, trust=trust, identity=LocalIdentity.from_party(server, source),
                                    accept_anchored_clients=True)
    client_config = HandshakeConfig(headers=headers, trust=trust, identity=LocalIdentity.from_party(client, source))
    return source, server_config, client_config


def drain(connection: Connection) -> object | None:
    """Events until NEED_DATA or the end; the terminal event, if any."""
    for _ in range(64):
        event = connection.next_event()
        if event is NEED_DATA:
            return None
        if isinstance(event, (ConnectionFailed, ConnectionClosed)):
            return event
    return None


def check(event) -> None:
    if isinstance(event, ConnectionFailed) and event.alert_sent \
            and event.error.alert == AlertDescription.internal_error:
        raise Finding(f"internal_error: {event.error}")


def record_flights(server_config, client_config) -> tuple[list[bytes], list[bytes]]:
    """The bytes each side sent, flight by flight, in one real handshake (and some data)."""
    client = Connection(Role.CLIENT, client_config, server_hostname="echo.example")
    server = Connection(Role.SERVER, server_config)
    client.start()
    to_server, to_client = [], []
    sent = False
    for _ in range(6):
        data = client.data_to_send()
        if data:
            to_server.append(data)
            server.receive_data(data)
        drain(server)
        if server.is_established and not sent:
            server.send_data(b"hello from the server")
        data = server.data_to_send()
        if data:
            to_client.append(data)
            client.receive_data(data)
        drain(client)
        if client.is_established and not sent:
            client.send_data(b"hello from the client")
            sent = True
    assert client.is_established, "the seed handshake did not complete"
    return to_server, to_client


def make_target(server_config, client_config):
    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        control, stream = data[0], data[1:]
        role = Role.SERVER if control & 1 == 0 else Role.CLIENT
        chunk = (1, 5, 64, 512, 4096, 16384, 1 << 20, 1 << 20)[(control >> 1) & 7]
        config = server_config if role is Role.SERVER else client_config
        connection = Connection(role, config, server_hostname="echo.example" if role is Role.CLIENT else None)
        if role is Role.CLIENT:
            connection.start()
            connection.data_to_send()
        try:
            for start in range(0, len(stream), chunk):
                connection.receive_data(stream[start:start + chunk])
                event = drain(connection)
                check(event)
                connection.data_to_send()
                if event is not None:
                    return
            if control & 0x10:                 # then the peer closes the TCP connection
                connection.receive_data(b"")
                check(drain(connection))
        except ConnectionDead:
            return
    return one_input


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workdir", type=Path, default=None, help="corpus and world (default: a temp dir)")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags, e.g. -runs=1000")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)        # log.exception on every internal error is noise here
    base = args.workdir or Path(tempfile.mkdtemp(prefix="milagro-fuzz-"))
    source, server_config, client_config = build_world(base)
    to_server, to_client = record_flights(server_config, client_config)
    corpus = base / "corpus"
    corpus.mkdir(exist_ok=True)
    for i in range(1, len(to_server) + 1):      # server role: control byte 0x00 / 0x02 (chunked)
        (corpus / f"to-server-{i}").write_bytes(b"\x0c" + b"".join(to_server[:i]))
    for i in range(1, len(to_client) + 1):      # client role: the server's flights
        (corpus / f"to-client-{i}").write_bytes(b"\x0d" + b"".join(to_client[:i]))
    print(f"seeds: {len(to_server)} client flights ({sum(map(len, to_server))} bytes), "
          f"{len(to_client)} server flights ({sum(map(len, to_client))} bytes)", flush=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={args.seconds}", "-rss_limit_mb=3072", "-max_len=40000",
                   "-print_final_stats=1", *args.libfuzzer, str(corpus)], make_target(server_config, client_config))
    atheris.Fuzz()                               # exits the process (0, or non-zero on a finding)
    return 0


if __name__ == "__main__":
    sys.exit(main())

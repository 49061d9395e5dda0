"""Captures of our own connections: the pcap writer, the recording proxy, ``milagro capture``
and the pcap and key log ``milagro demo tls`` writes, all read back by the real tshark."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from milagro_tls.capture.keylog import parse_keylog
from milagro_tls.capture.pcap import MSS, write_conversations
from milagro_tls.capture.recorder import RecordingProxy
from milagro_tls.chain.server import ChainServer
from milagro_tls.ciphersuites.registry import SUITES
from milagro_tls.cli import main as milagro_main

from capture_helpers import LockedNode, run_tshark
from helpers.contexts import echo_server, make_context
from helpers.served import MILAGRO
from interop.wireshark.demo_copy import make_demo_copy

ALL_SUITES = list(SUITES.values())


def _followed(pcap: Path, stream: int) -> list[tuple[bool, bytes]]:
    """tshark's "Follow TCP stream" of one connection: (from the client?, bytes) per turn."""
    lines = run_tshark("-r", pcap, "-q", "-z", f"follow,tcp,raw,{stream}").splitlines()
    body = lines[lines.index(next(line for line in lines if line.startswith("Node 1:"))) + 1:]
    return [(not line.startswith("\t"), bytes.fromhex(line.strip())) for line in body
            if line.strip() and not line.startswith("=")]


def test_pcap_writer_frames_each_connection_with_consistent_tcp(tmp_path):
    big = os.urandom(3 * MSS + 17)                   # more than one segment
    connections = [([(True, b"hello"), (False, big), (True, b"bye")], ("127.0.0.1", 40001), ("127.0.0.1", 443)),
                   ([(True, b"second"), (False, b"reply")], ("127.0.0.1", 40002), ("127.0.0.1", 443)),
                   ([(True, b"v6"), (False, b"too")], ("::1", 40003), ("::1", 443))]
    pcap = tmp_path / "three.pcap"
    packets = write_conversations(pcap, connections)
    assert len(run_tshark("-r", pcap).splitlines()) == packets
    assert run_tshark("-r", pcap, "-Y", "tcp.analysis.flags || _ws.malformed || _ws.expert.severity >= warning") == ""
    assert run_tshark("-r", pcap, "-T", "fields", "-e", "tcp.stream").split()[-1] == "2"
    for stream, (conversation, _, _) in enumerate(connections):
        joined = b"".join(data for _, data in _followed(pcap, stream))
        assert joined == b"".join(data for _, data in conversation)
    assert max(len(data) for _, data in _followed(pcap, 0)) <= MSS


def test_recording_proxy_relays_and_records_both_directions(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    address = server.getsockname()[:2]

    def shout() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    threading.Thread(target=shout, daemon=True).start()
    with RecordingProxy(address) as proxy:
        with socket.create_connection(proxy.address, timeout=5) as client:
            for word in (b"one", b"two"):
                client.sendall(word)
                assert client.recv(10) == word.upper()
            client.shutdown(socket.SHUT_WR)
            assert client.recv(10) == b""
    server.close()
    assert proxy.conversations == [[(True, b"one"), (False, b"ONE"), (True, b"two"), (False, b"TWO")]]
    (local, remote), = proxy.endpoints
    assert remote == address and local[0] == "127.0.0.1"
    packets = proxy.write_pcap(tmp_path / "proxy.pcap", server_port=443)
    assert run_tshark("-r", tmp_path / "proxy.pcap", "-T", "fields", "-e", "tcp.dstport").split()[0] == "443"
    assert packets == len(run_tshark("-r", tmp_path / "proxy.pcap").splitlines())


@pytest.fixture
def served_chain(world, tmp_path):
    """The world's chain served on loopback, for a ``milagro`` child process (regtest://DIR)."""
    chain_dir = Path(world.source.node.datadir)
    server = ChainServer(LockedNode(world.source), chain_dir).start()
    try:
        yield f"regtest://{chain_dir}"
    finally:
        server.close()


@pytest.mark.parametrize("pcap_port", [None, 0])
def test_milagro_capture_writes_the_pcap_and_the_key_log_of_a_connect(world, served_chain, tmp_path, pcap_port):
    trust = tmp_path / "trust.json"
    world.trust("echo.example").save(trust)
    pcap, keylog = tmp_path / "connect.pcap", tmp_path / "connect.keylog"
    server = make_context(world, identity="echo.example", trust=("alice",))
    with server, echo_server(server) as (port, errors):
        argv = [*MILAGRO, "capture", "--out", str(pcap), "--keylog", str(keylog),
                *(("--pcap-port", str(pcap_port)) if pcap_port is not None else ()),
                "--", "--home", str(world.home), "--chain", served_chain, "--trust", str(trust),
                "--identity", "alice", "--suite", "ecdh", "--server-name", "echo.example",
                "--send", "over the wire", f"127.0.0.1:{port}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"})
    assert done.returncode == 0, done.stderr
    assert "echo: over the wire" in done.stdout and "with ECDH-BTC-AES128-GCM-SHA256" in done.stdout
    assert f"WARNING: writing TLS master secrets to {keylog}" in done.stderr
    assert stat.S_IMODE(keylog.stat().st_mode) == 0o600
    expected_port = 443 if pcap_port is None else port
    fields = run_tshark("-r", pcap, *(() if expected_port == 443 else ("-d", f"tcp.port=={expected_port},tls")),
                        "-Y", "tls.handshake.type == 1", "-T", "fields", "-e", "tcp.dstport", "-e",
                        "tls.handshake.random").split()
    assert fields[0] == str(expected_port)
    (client_random, master_secret), = parse_keylog(keylog.read_text()).items()
    assert client_random.hex() == fields[1]                          # the ClientHello in the pcap
    assert f"wrote {pcap}: 1 connection(s)" in done.stdout


def test_milagro_capture_without_connect_arguments_says_so(capsys, tmp_path):
    assert milagro_main(["capture", "--out", str(tmp_path / "x.pcap")]) == 2
    assert "after --" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wireshark-demo")
    done = subprocess.run([*MILAGRO, "demo", "tls", "--dir", str(workdir)], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"})
    assert done.returncode == 0, done.stdout + done.stderr
    return workdir, done


def test_demo_writes_a_pcap_and_key_log_and_says_how_to_look_at_them(demo_run):
    workdir, done = demo_run
    pcap, keylog = workdir / "demo.pcap", workdir / "demo.keylog"
    assert f"{pcap}: 6 connections" in done.stdout
    assert f"tshark -r {pcap}" in done.stdout and f"tls.keylog_file:{keylog}" in done.stdout
    assert "TLS KEY LOG ON" in done.stderr
    assert stat.S_IMODE(keylog.stat().st_mode) == 0o600
    assert len(parse_keylog(keylog.read_text())) == len(ALL_SUITES)
    shown = run_tshark("-r", pcap, "-Y", "tls.handshake.type == 2", "-T", "fields", "-e", "tls.handshake.ciphersuite")
    assert shown.split() == [f"{suite.code:#06x}" for suite in ALL_SUITES]


def test_demo_pcap_decrypts_in_its_demo_copy_and_in_scapy(demo_run, tmp_path):
    from milagro_tls.capture.scapy_suites import decrypt_capture
    from scapy.layers.tls.record import TLSApplicationData

    workdir, _ = demo_run
    pcap, keylog = workdir / "demo.pcap", workdir / "demo.keylog"
    copy = tmp_path / "demo-copy.pcapng"
    make_demo_copy(pcap, copy)
    out = run_tshark("-r", copy, "-o", f"tls.keylog_file:{keylog}", "-Y", "tls.segment.data", "-T", "fields",
                     "-e", "tcp.stream", "-e", "tls.segment.data")
    shown = [line.split("\t") for line in out.splitlines()]
    assert shown == [[str(stream), text.hex()] for stream in range(len(ALL_SUITES))
                     for text in (b"hello over bitcoin", b"HELLO OVER BITCOIN")]
    plaintext = [layer.data for packet in decrypt_capture(pcap, keylog) if TLSApplicationData in packet
                 for layer in [packet[TLSApplicationData]]]
    assert plaintext == [b"hello over bitcoin", b"HELLO OVER BITCOIN"] * len(ALL_SUITES)

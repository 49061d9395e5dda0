"""The Lua postdissector interop/wireshark/milagro.lua, run by the real tshark (Debian's 4.0.x).

Captures are made here: a Context server and client on loopback through a RecordingProxy, for
both key exchanges, with a client identity (full mode) and without (server-only). What tshark
prints is compared with what the test's parties anchored (their locators, the chain) and with
the handshake messages decoded by milagro_tls itself. Crafted variants check reassembly
(messages over many TLS records and TCP segments, a 13 KB staple) and that malformed
messages give an expert info, never a Lua error. A missing tshark is a failure, not a skip.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.utils import wrpcap
from tlslite.utils.codec import Parser

from milagro_tls.capture.pcap import conversation_packets, write_pcap
from milagro_tls.capture.recorder import RecordingProxy
from milagro_tls.chain.hashes import sha256d, to_display_hex
from milagro_tls.chain.network import Network
from milagro_tls.chain.proof import AnchorProof
from milagro_tls.ciphersuites.registry import SUITES, KeyExchangeKind, select_suites
from milagro_tls.handshake.messages import (LOCATOR_EXTENSION, BitcoinClientKeyExchange,
                                            BitcoinServerKeyExchange)
from milagro_tls.identity.locator import LocatorKind

from helpers.contexts import echo_server, make_context

REPO = Path(__file__).resolve().parents[2]
LUA = REPO / "interop" / "wireshark" / "milagro.lua"

HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_SERVER_KEY_EXCHANGE, HS_CLIENT_KEY_EXCHANGE = 1, 2, 12, 16


# --------------------------------------------------------------------------------------------
# tshark
# --------------------------------------------------------------------------------------------

def require_tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed, so the Wireshark dissector cannot be tested. `make test` "
                    "installs it (the Debian package tshark); by hand: echo 'wireshark-common "
                    "wireshark-common/install-setuid boolean false' | debconf-set-selections && "
                    "DEBIAN_FRONTEND=noninteractive apt-get install -y tshark", pytrace=False)
    return path


def run_tshark(*args, home: Path, script: bool = True) -> subprocess.CompletedProcess:
    """tshark with the Lua script, a throwaway HOME (no personal preferences or plugins: a copy
    of milagro.lua installed there would register the protocol twice), no name resolution."""
    command = [require_tshark(), "-n"]
    if script:
        command += ["-X", f"lua_script:{LUA}"]
    done = subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"tshark {args} exited {done.returncode}:\n{done.stderr}"
    assert "Lua Error" not in output and "lua_script" not in done.stderr, output[-3000:]
    return done


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tshark-home")


def fields(pcap: Path, home: Path, *names: str, filter: str | None = None) -> dict[int, dict[str, str]]:
    """-T fields output by frame number, for the frames where any of ``names`` is present."""
    args = ["-r", pcap, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number"]
    for name in names:
        args += ["-e", name]
    if filter:
        args += ["-Y", filter]
    rows = {}
    for line in run_tshark(*args, home=home).stdout.splitlines():
        number, *values = line.split("\t")
        if any(values):
            rows[int(number)] = dict(zip(names, values))
    return rows


# --------------------------------------------------------------------------------------------
# TLS records and handshake messages of a recorded conversation
# --------------------------------------------------------------------------------------------

def turns(conversation):
    """Consecutive pieces of one direction joined: each turn of the handshake whole."""
    joined: list[tuple[bool, bytes]] = []
    for from_client, data in conversation:
        if joined and joined[-1][0] == from_client:
            joined[-1] = (from_client, joined[-1][1] + data)
        else:
            joined.append((from_client, data))
    return joined


def records(data: bytes) -> list[tuple[int, int, bytes]]:
    out, i = [], 0
    while i + 5 <= len(data):
        content_type, version, length = struct.unpack(">BHH", data[i:i + 5])
        out.append((content_type, version, data[i + 5:i + 5 + length]))
        i += 5 + length
    assert i == len(data), "a turn does not end on a record boundary"
    return out


def handshake_messages(data: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of the plaintext handshake messages at the start of a turn."""
    stream = b"".join(payload for content_type, _, payload in _leading_handshake(records(data)))
    messages, i = [], 0
    while i < len(stream):
        length = int.from_bytes(stream[i + 1:i + 4], "big")
        messages.append((stream[i], stream[i + 4:i + 4 + length]))
        i += 4 + length
    return messages


def _leading_handshake(recs):
    for record in recs:
        if record[0] != 22:
            return
        yield record


def rewrite_turn(data: bytes, transform=lambda kind, body: body, *, max_fragment: int = 16384) -> bytes:
    """The turn with each plaintext handshake message's body passed through ``transform`` and
    the handshake stream re-cut into records of at most ``max_fragment`` bytes (a message may
    then span several records, which TLS allows); the records after it are kept as they are."""
    recs = records(data)
    leading = list(_leading_handshake(recs))
    if not leading:
        return data
    version = leading[0][1]
    stream = b"".join(bytes([kind]) + len(body).to_bytes(3, "big") + body
                      for kind, body in ((k, transform(k, b)) for k, b in handshake_messages(data)))
    out = b"".join(struct.pack(">BHH", 22, version, len(stream[j:j + max_fragment])) + stream[j:j + max_fragment]
                   for j in range(0, len(stream), max_fragment))
    return out + b"".join(struct.pack(">BHH", t, v, len(p)) + p for t, v, p in recs[len(leading):])


def rewrite(conversation, transform=lambda kind, body: body, *, max_fragment: int = 16384, segment: int | None = None):
    """A variant of a recorded conversation: handshake messages transformed and re-fragmented,
    and every turn cut into TCP segments of ``segment`` bytes."""
    out = []
    for from_client, data in turns(conversation):
        data = rewrite_turn(data, transform, max_fragment=max_fragment)
        step = segment or len(data)
        out += [(from_client, data[j:j + step]) for j in range(0, len(data), step)]
    return out


def write_connections(path: Path, conversations) -> Path:
    """Several conversations in one pcap, one after the other, each with its own client port
    (Wireshark tells the TCP connections apart: tcp.stream 0, 1, ...)."""
    packets, start = [], 1_700_000_000.0
    for index, conversation in enumerate(conversations):
        framed = conversation_packets(conversation, client=("127.0.0.1", 50000 + index),
                                      server=("127.0.0.1", 443), start_time=start)
        packets += framed
        start = float(framed[-1].time) + 0.01
    wrpcap(str(path), packets)
    return path


def write_variant(path: Path, conversation) -> Path:
    # conversation_packets cuts a piece longer than one MSS itself; shorter pieces stay one segment.
    write_pcap(path, conversation)
    return path


def replace_extension(body: bytes, ext_type: int, data: bytes) -> bytes:
    """A ServerHello body with one extension's data replaced."""
    at = 2 + 32
    at += 1 + body[at] + 2 + 1                   # session id, suite, compression
    ext_start = at + 2
    out, i = b"", ext_start
    while i < len(body):
        kind, length = struct.unpack(">HH", body[i:i + 4])
        value = data if kind == ext_type else body[i + 4:i + 4 + length]
        out += struct.pack(">HH", kind, len(value)) + value
        i += 4 + length
    return body[:at] + struct.pack(">H", len(out)) + out


# --------------------------------------------------------------------------------------------
# Captures
# --------------------------------------------------------------------------------------------

@dataclass
class Capture:
    kx: str                     # "yak" / "ecdh"
    full: bool                  # the client has an identity (full mode) or is anonymous
    conversation: list
    pcap: Path
    offered: list[int]
    selected: int
    ske: BitcoinServerKeyExchange
    cke: BitcoinClientKeyExchange

    @property
    def suite(self):
        return SUITES[self.selected]


def _selected_suite(server_hello: bytes) -> int:
    at = 2 + 32
    at += 1 + server_hello[at]
    return int.from_bytes(server_hello[at:at + 2], "big")


def _parse(message_cls, suite, body: bytes, **options):
    return message_cls(suite).parse(Parser(bytearray(len(body).to_bytes(3, "big") + body)), **options)


def decode_handshake(conversation):
    """The key-exchange messages as milagro_tls itself decodes them: the test's oracle."""
    hs = [handshake_messages(data) for _, data in turns(conversation)[:3]]
    server = dict(hs[1])
    client = dict(hs[2])
    selected = _selected_suite(server[HS_SERVER_HELLO])
    suite = SUITES[selected]
    ske = _parse(BitcoinServerKeyExchange, suite, server[HS_SERVER_KEY_EXCHANGE])
    cke_body = client[HS_CLIENT_KEY_EXCHANGE]
    try:
        cke = _parse(BitcoinClientKeyExchange, suite, cke_body, with_staple=True)
    except Exception:
        cke = _parse(BitcoinClientKeyExchange, suite, cke_body, with_staple=False)
    return selected, ske, cke


@pytest.fixture(scope="module")
def captures(world, tmp_path_factory) -> dict[tuple[str, bool], Capture]:
    directory = tmp_path_factory.mktemp("captures")
    out = {}
    server = make_context(world, identity="echo.example", trust=("alice",))
    with server, echo_server(server) as (port, errors):
        for kx in ("yak", "ecdh"):
            for full in (True, False):
                client = make_context(world, identity="alice" if full else None, trust=("echo.example",),
                                      suites=kx)
                with client, RecordingProxy(("127.0.0.1", port)) as proxy:
                    raw = socket.create_connection(proxy.address, timeout=10)
                    with client.wrap_socket(raw, server_hostname="echo.example") as tls:
                        tls.sendall(b"ping")
                        assert tls.recv(100) == b"ping"
                proxy.close()
                conversation = proxy.conversations[0]
                pcap = directory / f"{kx}-{'full' if full else 'server-only'}.pcap"
                write_pcap(pcap, conversation)
                selected, ske, cke = decode_handshake(conversation)
                out[kx, full] = Capture(kx, full, conversation, pcap, [s.code for s in select_suites(kx)],
                                        selected, ske, cke)
        assert errors == []
    return out


ALL = [("yak", True), ("yak", False), ("ecdh", True), ("ecdh", False)]
IDS = ["yak-full", "yak-server-only", "ecdh-full", "ecdh-server-only"]
CLIENT_HELLO_FRAME, SERVER_HELLO_FRAME, CLIENT_KEY_EXCHANGE_FRAME = 4, 6, 8   # write_pcap's layout


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

def test_missing_tshark_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match="tshark is not installed"):
        require_tshark()


def test_lua_tables_match_the_python_registry():
    """The suite, network and kind tables in the script are those of milagro_tls."""
    text = LUA.read_text()
    suites = {int(code, 16): (name, kx) for code, name, kx in
              re.findall(r'\[0x([0-9A-Fa-f]{4})\] = \{ name = "(\w+)",\s*kx = "(\w+)" \}', text)}
    assert suites == {code: (s.name, s.key_exchange.value) for code, s in SUITES.items()}
    networks = dict(re.findall(r'\[(\d)\] = "(\w+)"', text.split("local NETWORKS", 1)[1].split("\n", 1)[0]))
    assert {int(k): v for k, v in networks.items()} == {n.value: n.label for n in Network}
    kinds = dict(re.findall(r'\[(\d)\] = "([\w-]+)"', text.split("local KINDS", 1)[1].split("\n", 1)[0]))
    assert {int(k): v for k, v in kinds.items()} == {k.value: k.label for k in LocatorKind}
    assert f"LOCATOR_EXTENSION = 0x{LOCATOR_EXTENSION:04X}" in text


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_txid_field_prints_exactly_the_anchored_locators(world, captures, home, case):
    capture = captures[case]
    out = run_tshark("-r", capture.pcap, "-T", "fields", "-e", "milagro.txid", home=home).stdout
    expected = ([world.parties["alice"].locator.txid_hex] if capture.full else []) \
        + [world.parties["echo.example"].locator.txid_hex]
    assert [line for line in out.splitlines() if line] == expected


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_suite_names_show(captures, home, case):
    capture = captures[case]
    name = capture.suite.name
    rows = fields(capture.pcap, home, "milagro.suite", "milagro.suite.name", "_ws.col.Info")
    hello = rows[CLIENT_HELLO_FRAME]
    assert hello["milagro.suite"].split(",") == [f"0x{code:04x}" for code in capture.offered]
    assert f"offers {SUITES[capture.offered[0]].name} +{len(capture.offered) - 1}" in hello["_ws.col.Info"]
    server = rows[SERVER_HELLO_FRAME]
    assert server["milagro.suite"] == f"0x{capture.selected:04x}"
    assert server["milagro.suite.name"].split(",")[0] == name
    assert f"Server Hello, Server Key Exchange, Server Hello Done [{name}" in server["_ws.col.Info"]
    verbose = run_tshark("-r", capture.pcap, "-V", "-O", "milagro", home=home).stdout
    for code in capture.offered:
        assert f"Offered Milagro suite: {SUITES[code].name} (0x{code:04x})" in verbose
    assert f"Selected Milagro suite: {name} (0x{capture.selected:04x})" in verbose
    assert f"Milagro ServerKeyExchange ({name})" in verbose
    assert f"Milagro ClientKeyExchange ({name})" in verbose
    # The one-line summary tshark prints by default carries the suite name too.
    summary = run_tshark("-r", capture.pcap, home=home).stdout.splitlines()
    assert name in summary[SERVER_HELLO_FRAME - 1]


LOCATOR_FIELDS = ("milagro.txid", "milagro.locator.version", "milagro.network", "milagro.kind", "milagro.input",
                  "milagro.block_hash", "milagro.locator.body_length", "milagro.locator.anonymous")


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_locator_fields(world, captures, home, case):
    capture = captures[case]
    rows = fields(capture.pcap, home, *LOCATOR_FIELDS)
    server_locator = world.parties["echo.example"].locator
    expected = {SERVER_HELLO_FRAME: server_locator}
    if capture.full:
        expected[CLIENT_HELLO_FRAME] = world.parties["alice"].locator
    else:
        assert rows[CLIENT_HELLO_FRAME] == {**dict.fromkeys(LOCATOR_FIELDS, ""), "milagro.locator.anonymous": "1"}
    for frame, locator in expected.items():
        assert rows[frame] == {
            "milagro.txid": locator.txid_hex, "milagro.locator.version": "1",
            "milagro.network": locator.network.label, "milagro.kind": locator.kind.label,
            "milagro.input": str(locator.input_index), "milagro.block_hash": to_display_hex(locator.block_hash),
            "milagro.locator.body_length": "0", "milagro.locator.anonymous": ""}
        assert locator.network.label == "regtest" and locator.kind.label == "p2wpkh"
    assert set(rows) == {CLIENT_HELLO_FRAME, SERVER_HELLO_FRAME}


KX_FIELDS = ("milagro.point", "milagro.point.role", "milagro.mode", "milagro.nizk.commitment", "milagro.nizk.response",
             "milagro.cert.length", "milagro.cert.name", "milagro.cert.role", "milagro.proof.length",
             "milagro.proof.height", "milagro.proof.tx_index", "milagro.proof.depth", "milagro.proof.tx_length",
             "milagro.certificate")


def expected_kx(world, message, *, role: str, mode: str, party: str | None) -> dict[str, str]:
    row = dict.fromkeys(KX_FIELDS, "")
    row.update({"milagro.point": message.point.hex(), "milagro.point.role": role, "milagro.mode": mode})
    if message.proof is not None:
        row["milagro.nizk.commitment"] = message.proof.commitment.hex()
        row["milagro.nizk.response"] = message.proof.response.hex()
    if party is not None:
        staple = message.staple
        certificate = json.loads(staple.certificate)
        proof = AnchorProof.decode(staple.proof)
        locator = world.parties[party].locator
        # The proof's block is the one the party's locator names, at the height the chain says.
        assert sha256d(proof.header) == locator.block_hash
        assert proof.height == world.source.tx_status(locator.txid, locator.block_hash).height
        assert certificate["name"] == party
        row.update({"milagro.cert.length": str(len(staple.certificate)), "milagro.cert.name": party,
                    "milagro.cert.role": certificate["role"], "milagro.proof.length": str(len(staple.proof)),
                    "milagro.proof.height": str(proof.height), "milagro.proof.tx_index": str(proof.tx_index),
                    "milagro.proof.depth": str(len(proof.txid_branch)), "milagro.proof.tx_length": str(len(proof.tx)),
                    "milagro.certificate": staple.certificate.decode()})
    return row


ROLES = {("ecdh", "ske"): "nonce point R_S", ("ecdh", "full"): "nonce point R_C", ("ecdh", "server-only"): "ephemeral E",
         ("yak", "ske"): "ephemeral X_S", ("yak", "full"): "ephemeral X_C", ("yak", "server-only"): "ephemeral X_C"}


def check_key_exchange_fields(world, capture: Capture, rows, *, ske_frame: int, cke_frame: int) -> None:
    mode = "full" if capture.full else "server-only"
    assert rows[ske_frame] == expected_kx(world, capture.ske, role=ROLES[capture.kx, "ske"], mode="",
                                          party="echo.example")
    assert rows[cke_frame] == expected_kx(world, capture.cke, role=ROLES[capture.kx, mode], mode=mode,
                                          party="alice" if capture.full else None)
    assert set(rows) == {ske_frame, cke_frame}


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_key_exchange_fields(world, captures, home, case):
    capture = captures[case]
    assert (capture.ske.proof is not None) == (capture.kx == "yak")
    assert (capture.cke.staple is not None) == capture.full
    rows = fields(capture.pcap, home, *KX_FIELDS)
    check_key_exchange_fields(world, capture, rows, ske_frame=SERVER_HELLO_FRAME, cke_frame=CLIENT_KEY_EXCHANGE_FRAME)
    verbose = run_tshark("-r", capture.pcap, "-V", "-O", "milagro", home=home).stdout
    assert "Staple: echo.example (service) @ height" in verbose
    assert ("Schnorr proof (RFC 8235)" in verbose) == (capture.kx == "yak")
    assert "Malformed" not in verbose and "disagrees" not in verbose


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_display_filters(world, captures, home, case):
    capture = captures[case]
    server_txid = world.parties["echo.example"].locator.txid_hex
    client_txid = world.parties["alice"].locator.txid_hex

    def frames(expression):
        out = run_tshark("-r", capture.pcap, "-T", "fields", "-e", "frame.number", "-Y", expression, home=home).stdout
        return [int(n) for n in out.split()]

    assert frames(f'milagro.txid == "{server_txid}"') == [SERVER_HELLO_FRAME]
    assert frames(f'milagro.txid == "{client_txid}"') == ([CLIENT_HELLO_FRAME] if capture.full else [])
    assert frames(f'milagro.txid == "{"0" * 64}"') == []
    assert frames(f"milagro.suite.selected == 0x{capture.selected:04x}") == [SERVER_HELLO_FRAME]
    # Offered in the ClientHello, selected in the ServerHello, and named on both key exchanges.
    assert frames(f'milagro.suite.name == "{capture.suite.name}"') == \
        [CLIENT_HELLO_FRAME, SERVER_HELLO_FRAME, CLIENT_KEY_EXCHANGE_FRAME]
    assert frames('milagro.kind == "p2wpkh" && milagro.network == "regtest"') == \
        ([CLIENT_HELLO_FRAME] if capture.full else []) + [SERVER_HELLO_FRAME]
    assert frames('milagro.cert.name == "alice"') == ([CLIENT_KEY_EXCHANGE_FRAME] if capture.full else [])
    assert frames("milagro.locator.anonymous") == ([] if capture.full else [CLIENT_HELLO_FRAME])
    assert frames("milagro.nizk.commitment") == \
        ([SERVER_HELLO_FRAME, CLIENT_KEY_EXCHANGE_FRAME] if capture.kx == "yak" else [])
    assert frames("milagro.malformed || milagro.mode.mismatch") == []


@pytest.mark.parametrize("case", [("yak", True), ("ecdh", True)], ids=["yak-full", "ecdh-full"])
def test_messages_over_many_records_and_segments(world, captures, home, tmp_path, case):
    """Every handshake message cut into 200-byte TLS records and every turn into 97-byte TCP
    segments: the ~1 KB ServerKeyExchange and ClientKeyExchange come out of Wireshark's
    reassembly whole and decode as in the plain capture."""
    capture = captures[case]
    variant = rewrite(capture.conversation, max_fragment=200, segment=97)
    pcap = write_variant(tmp_path / "fragmented.pcap", variant)
    # The variant is what it says: the server's flight in 200-byte records, 97-byte segments.
    server_flight = turns(variant)[1][1]
    assert len(records(server_flight)) >= 6 and max(len(d) for _, d in variant) == 97
    rows = fields(pcap, home, *KX_FIELDS)
    assert len(rows) == 2
    ske_frame, cke_frame = sorted(rows)
    check_key_exchange_fields(world, capture, rows, ske_frame=ske_frame, cke_frame=cke_frame)
    verbose = run_tshark("-r", pcap, "-V", home=home).stdout
    assert re.search(r"\d+ Reassembled Handshake Fragments \(\d+ bytes\)", verbose)
    assert "Reassembled TCP Segments" in verbose
    out = run_tshark("-r", pcap, "-T", "fields", "-e", "milagro.txid", home=home).stdout
    assert [line for line in out.splitlines() if line] == [world.parties["alice"].locator.txid_hex,
                                                            world.parties["echo.example"].locator.txid_hex]


def _with_big_proof(capture: Capture, tx_size: int):
    """The capture's ServerKeyExchange with a proof bundle whose transaction is ``tx_size`` bytes
    (a batch staple is about 13 KB)."""
    staple = capture.ske.staple
    proof = AnchorProof.decode(staple.proof)
    big = dataclasses.replace(proof, tx=bytes(range(256)) * (tx_size // 256) + bytes(tx_size % 256)).encode()

    def transform(kind, body):
        if kind != HS_SERVER_KEY_EXCHANGE:
            return body
        head = body[:len(body) - (4 + len(staple.certificate) + len(staple.proof))]
        return head + struct.pack(">H", len(staple.certificate)) + staple.certificate + struct.pack(">H", len(big)) + big
    return transform, proof


@pytest.mark.parametrize("fragment", [16384, 1000], ids=["one-record", "1000-byte-records"])
def test_large_staple(world, captures, home, tmp_path, fragment):
    capture = captures["yak", True]
    transform, proof = _with_big_proof(capture, 12_000)
    pcap = write_variant(tmp_path / "big.pcap", rewrite(capture.conversation, transform, max_fragment=fragment))
    rows = fields(pcap, home, "milagro.cert.name", "milagro.proof.height", "milagro.proof.tx_length",
                  "milagro.proof.length", "milagro.nizk.commitment", "tcp.reassembled.length",
                  filter="milagro.cert.name")
    (ske_frame, ske), (cke_frame, cke) = sorted(rows.items())
    assert ske["milagro.cert.name"] == "echo.example"
    assert ske["milagro.proof.height"] == str(proof.height)
    assert ske["milagro.proof.tx_length"] == "12000"
    assert int(ske["milagro.proof.length"]) > 12_000
    assert ske["milagro.nizk.commitment"] == capture.ske.proof.commitment.hex()
    if fragment > 12_000:       # one TLS record over ten TCP segments
        assert int(ske["tcp.reassembled.length"].split(",")[0]) > 12_000
    else:                       # a handshake message over thirteen TLS records
        verbose = run_tshark("-r", pcap, "-V", "-Y", "milagro.cert.name", home=home).stdout
        counts = [int(n) for n in re.findall(r"(\d+) Reassembled Handshake Fragments", verbose)]
        assert max(counts) >= 13
    assert cke["milagro.cert.name"] == "alice"


def _malformed_variants(capture: Capture):
    """name -> (transform, what the -V output says)."""
    staple = capture.ske.staple
    prefix = 1 + 33 + (1 + 33 + 32 if capture.kx == "yak" else 0)

    def on_ske(change):
        return lambda kind, body: change(body) if kind == HS_SERVER_KEY_EXCHANGE else body

    def depth_200(body):
        at = prefix + 2 + len(staple.certificate) + 2 + 1 + 4 + 80 + 4
        return body[:at] + bytes([200]) + body[at + 1:]

    return {
        "truncated": (on_ske(lambda body: body[:len(body) // 2]), "runs past the message"),
        "certificate-length": (on_ske(lambda body: body[:prefix] + b"\xff\xff" + body[prefix + 2:]),
                               "certificate of 65535 bytes runs past the message"),
        "point-cut": (on_ske(lambda body: b"\x21\x02\x03"), "runs past the message"),
        "empty": (on_ske(lambda body: b""), "no point length"),
        "point-only": (on_ske(lambda body: body[:34]),
                       "Schnorr proof missing" if capture.kx == "yak" else "staple missing"),
        "trailing": (on_ske(lambda body: body + b"\x00\x01"), "2 trailing bytes after the staple"),
        "depth": (on_ske(depth_200), "Merkle depth 200 exceeds 24"),
        "garbage": (on_ske(lambda body: b"\xff" * len(body)), "Malformed milagro message"),
        "empty-certificate": (on_ske(lambda body: body[:prefix] + b"\x00\x00" + body[prefix + 2 + len(staple.certificate):]),
                              "empty certificate"),
    }


def expert_rows(pcap: Path, home: Path) -> dict[int, list[dict[str, str]]]:
    """Per TCP connection, the frames the dissector annotated: the -V run first, so that a Lua
    error anywhere fails the test (run_tshark checks), then the fields."""
    run_tshark("-r", pcap, "-V", home=home)
    names = ("tcp.stream", "milagro.txid", "milagro.cert.name", "milagro.network", "milagro.kind",
             "_ws.expert.message", "_ws.col.Info")
    by_stream: dict[int, list[dict[str, str]]] = {}
    for frame, row in fields(pcap, home, *names, filter="milagro").items():
        by_stream.setdefault(int(row["tcp.stream"]), []).append({"frame": frame, **row})
    return by_stream


@pytest.mark.parametrize("kx", ["yak", "ecdh"])
def test_malformed_server_key_exchange_gives_expert_info_not_a_lua_error(world, captures, home, tmp_path, kx):
    """Crafted ServerKeyExchange messages (cut, lengths that overrun, missing parts, trailing
    bytes, garbage), each on its own connection in one pcap: tshark exits 0, the message gets a
    milagro.malformed expert info saying what is wrong, and no Lua error shows anywhere."""
    capture = captures[kx, True]
    server_txid = world.parties["echo.example"].locator.txid_hex
    variants = _malformed_variants(capture)
    pcap = write_connections(tmp_path / "malformed.pcap",
                             [rewrite(capture.conversation, transform) for transform, _ in variants.values()])
    by_stream = expert_rows(pcap, home)
    assert sorted(by_stream) == list(range(len(variants)))
    for stream, (name, (_, says)) in enumerate(variants.items()):
        client_hello, hello, key_exchange = by_stream[stream]        # frames CH, SH+SKE+SHD, CKE
        # The ServerHello's locator in the same frame still decodes; the message is flagged.
        assert hello["milagro.txid"] == server_txid, name
        assert "Malformed milagro message: " in hello["_ws.expert.message"], (name, hello)
        assert says in hello["_ws.expert.message"], (name, hello["_ws.expert.message"])
        assert hello["_ws.col.Info"].endswith("; Malformed milagro ServerKeyExchange]"), (name, hello["_ws.col.Info"])
        # The rest of the connection is unaffected: the client's hello and key exchange decode.
        assert client_hello["milagro.txid"] == world.parties["alice"].locator.txid_hex
        assert key_exchange["milagro.cert.name"] == "alice", name
    flagged = fields(pcap, home, "tcp.stream", filter="milagro.malformed")
    assert sorted(int(row["tcp.stream"]) for row in flagged.values()) == list(range(len(variants)))


def test_malformed_locators_and_a_cut_capture(world, captures, home, tmp_path):
    capture = captures["ecdh", True]
    good = world.parties["echo.example"].locator.encode()
    odd = good[:1] + bytes([9, 7]) + good[3:]          # unknown network and kind: named, not fatal
    # Fields decoded before the fault stay (the txid of a locator with a bad body length shows).
    locators = [(good[:10], f"locator of 10 bytes, shorter than {len(good)}"),
                (good[:-2] + b"\x01\x00", "body length 256 exceeds the extension"),
                (good + b"\x00", "1 trailing bytes after the locator body"),
                (odd, None)]

    def with_locator(locator):
        return lambda kind, body: (replace_extension(body, LOCATOR_EXTENSION, locator)
                                   if kind == HS_SERVER_HELLO else body)
    conversations = [rewrite(capture.conversation, with_locator(locator)) for locator, _ in locators]
    # A capture that stops in the middle of the server's first record (ServerHello and
    # ServerKeyExchange are in one record): only the ClientHello decodes, and no error.
    conversations.append([(from_client, data if from_client else data[:700])
                          for from_client, data in turns(capture.conversation)[:2]])
    by_stream = expert_rows(write_connections(tmp_path / "locators.pcap", conversations), home)
    client_txid = world.parties["alice"].locator.txid_hex
    for stream, (_, says) in enumerate(locators):
        client_hello, server_hello = by_stream[stream][:2]
        assert client_hello["milagro.txid"] == client_txid
        if says:
            assert f"Malformed milagro message: {says}" in server_hello["_ws.expert.message"], server_hello
            assert ", malformed locator;" in server_hello["_ws.col.Info"]
        else:
            assert (server_hello["milagro.network"], server_hello["milagro.kind"]) == ("unknown (9)", "unknown (7)")
            assert "Malformed" not in server_hello["_ws.expert.message"]
    cut = by_stream[len(locators)]
    assert [row["milagro.txid"] for row in cut] == [client_txid]


def test_client_key_exchange_disagreeing_with_the_client_hello(captures, home, tmp_path):
    """A full-mode ClientHello (non-empty locator) followed by a ClientKeyExchange without a
    staple: decoded by its length, with a warning."""
    capture = captures["yak", True]
    bare = 1 + 33 + 1 + 33 + 32

    def transform(kind, body):
        return body[:bare] if kind == HS_CLIENT_KEY_EXCHANGE else body
    pcap = write_variant(tmp_path / "mismatch.pcap", rewrite(capture.conversation, transform))
    rows = fields(pcap, home, "milagro.mode", "milagro.point.role", "milagro.cert.name", filter="milagro.mode.mismatch")
    assert rows == {CLIENT_KEY_EXCHANGE_FRAME: {"milagro.mode": "server-only", "milagro.point.role": "ephemeral X_C",
                                                "milagro.cert.name": ""}}


def test_installed_as_a_personal_plugin(world, captures, tmp_path):
    """README's install: copy the script into ~/.local/lib/wireshark/plugins/; no -X needed."""
    home = tmp_path / "home"
    plugins = home / ".local" / "lib" / "wireshark" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(LUA, plugins / "milagro.lua")
    capture = captures["ecdh", False]
    out = run_tshark("-r", capture.pcap, "-T", "fields", "-e", "milagro.suite.selected", "-e", "milagro.txid",
                     "-Y", "milagro.suite.selected", home=home, script=False).stdout
    assert out.split() == [f"0x{capture.selected:04x}", world.parties["echo.example"].locator.txid_hex]
    plugin_list = subprocess.run([require_tshark(), "-G", "plugins"], capture_output=True, text=True,
                                 env={**os.environ, "HOME": str(home)}).stdout
    assert "milagro.lua" in plugin_list
    # Given with -X as well, the second copy stands aside with a note instead of failing to load.
    done = run_tshark("-r", capture.pcap, "-T", "fields", "-e", "milagro.txid", home=home)
    assert [line for line in done.stdout.splitlines() if line] == [world.parties["echo.example"].locator.txid_hex]
    assert "a milagro dissector is already loaded" in done.stderr


def test_a_standard_suite_selected_is_left_alone(captures, home, tmp_path):
    """A ServerHello selecting a standard suite (0xC02B): the ClientHello's offer and locator
    still decode, the key exchanges are not ours and are not decoded."""
    capture = captures["ecdh", True]

    def transform(kind, body):
        if kind != HS_SERVER_HELLO:
            return body
        at = 2 + 32 + 1 + body[2 + 32]
        return body[:at] + b"\xc0\x2b" + body[at + 2:]
    pcap = write_variant(tmp_path / "standard.pcap", rewrite(capture.conversation, transform))
    rows = fields(pcap, home, "milagro.suite", "milagro.point", "milagro.cert.name", "milagro.txid")
    assert list(rows) == [CLIENT_HELLO_FRAME]
    assert rows[CLIENT_HELLO_FRAME]["milagro.point"] == ""

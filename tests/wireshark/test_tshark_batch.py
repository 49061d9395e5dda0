"""The Lua dissector on batch-anchored PATs (locator kind 2, taproot-batch), run by the real tshark.

Two PATs of one mined batch (positions 0 and 1 of three; position 2 did not answer) shake hands
through Contexts and a RecordingProxy, the server a PAT too, so both hellos carry a kind-2
locator and both key exchanges a batch staple. What tshark prints is compared with the batch
itself: the locator body (position, Merkle index, size, path) with each PAT's locator, and the
slot read from the stapled transaction (leaf keys, the signature at witness item N-1-position,
R's x, control block, root) with the mined transaction parsed by the tests' own hashlib-only
parser. Crafted variants: a locator naming the empty slot, malformed bodies and a broken leaf.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from milagro_tls.capture.recorder import RecordingProxy
from milagro_tls.context import Context
from milagro_tls.handshake.messages import LOCATOR_EXTENSION
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.locator import Locator
from milagro_tls.merkle import InclusionProof
from milagro_tls.trust import TrustEntry, TrustStore

from batch.support import Batcher, mined_tx, parse_raw_tx
from helpers.contexts import echo_server
from test_tshark_dissector import (HS_CLIENT_KEY_EXCHANGE, HS_SERVER_HELLO, HS_SERVER_KEY_EXCHANGE, LUA,
                                   expert_rows, fields, replace_extension, rewrite, run_tshark, write_connections)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tshark-batch-home")


@dataclass
class BatchCapture:
    kx: str
    pcap: Path
    conversation: list
    client: object          # BatchPat
    server: object
    batch: object           # PendingBatch
    witness: list           # the batch input's witness items as mined
    locals: dict            # name -> LocalIdentity


@pytest.fixture(scope="module")
def batch_world(world, tmp_path_factory):
    batcher = Batcher.create(world.source, tmp_path_factory.mktemp("tshark-batch"))
    pats = batcher.new_pats(3)
    batch, _ = batcher.run(pats, absent={2})
    for pat in pats[:2]:
        pat.confirm(world.source)
    witness = parse_raw_tx(mined_tx(world.source, batch.txid)).witnesses[0]
    return batcher, pats, batch, witness


@pytest.fixture(scope="module")
def captures(world, batch_world, tmp_path_factory) -> dict[str, BatchCapture]:
    batcher, pats, batch, witness = batch_world
    client_pat, server_pat = pats[0], pats[1]
    locals_ = {pat.name: LocalIdentity.from_batch_pat(pat, world.source) for pat in (client_pat, server_pat)}
    directory = tmp_path_factory.mktemp("batch-captures")
    out = {}
    for kx in ("yak", "ecdh"):
        server = Context(identity=locals_[server_pat.name], chain=world.source, headers=":memory:",
                         trust=TrustStore([TrustEntry.from_json(client_pat.trust_entry())]))
        client = Context(identity=locals_[client_pat.name], chain=world.source, headers=":memory:",
                         trust=TrustStore([TrustEntry.from_json(server_pat.trust_entry())]), suites=kx)
        with server, client, echo_server(server) as (port, errors):
            with RecordingProxy(("127.0.0.1", port)) as proxy:
                raw = socket.create_connection(proxy.address, timeout=10)
                with client.wrap_socket(raw, server_hostname=server_pat.name) as tls:
                    tls.sendall(b"ping")
                    assert tls.recv(100) == b"ping"
                    assert tls.getpeercert()["locator"]["kind"] == "taproot-batch"
            pcap = directory / f"batch-{kx}.pcap"
            proxy.write_pcap(pcap, server_port=443)
            conversation = list(proxy.conversations[0])
        assert errors == []
        out[kx] = BatchCapture(kx, pcap, conversation, client_pat, server_pat, batch, witness, locals_)
    return out


LOCATOR_FIELDS = ("milagro.kind", "milagro.input", "milagro.locator.body_length", "milagro.batch.position",
                  "milagro.merkle.index", "milagro.merkle.size", "milagro.merkle.count", "milagro.merkle.path")

SLOT_FIELDS = ("milagro.cert.name", "milagro.cert.batch_key", "milagro.batch.pat_count", "milagro.batch.signed",
               "milagro.batch.tbs_key", "milagro.batch.pat_key", "milagro.batch.witness_index",
               "milagro.batch.signature", "milagro.batch.nonce_x", "milagro.batch.control_block",
               "milagro.batch.root", "milagro.batch.leaf")


def expected_locator(locator: Locator) -> dict[str, str]:
    slot = locator.batch_slot
    return {"milagro.kind": "taproot-batch", "milagro.input": str(locator.input_index),
            "milagro.locator.body_length": str(len(locator.body)), "milagro.batch.position": str(slot.position),
            "milagro.merkle.index": str(slot.proof.index), "milagro.merkle.size": str(slot.proof.size),
            "milagro.merkle.count": str(len(slot.proof.path)),
            "milagro.merkle.path": ",".join(h.hex() for h in slot.proof.path)}


def expected_slot(capture: BatchCapture, pat) -> dict[str, str]:
    n, position = 3, pat.locator.batch_slot.position
    items = capture.witness
    leaf, control, signature = items[-2], items[-1], items[n - 1 - position]
    assert len(signature) == 64 and len(control) == 33 and leaf[1:33] == capture.batch.tbs_key
    return {"milagro.cert.name": pat.name, "milagro.cert.batch_key": capture.batch.tbs_key.hex(),
            "milagro.batch.pat_count": "3", "milagro.batch.signed": "2",
            "milagro.batch.tbs_key": capture.batch.tbs_key.hex(), "milagro.batch.pat_key": pat.certificate.pubkey[1:].hex(),
            "milagro.batch.witness_index": str(n - 1 - position), "milagro.batch.signature": signature.hex(),
            "milagro.batch.nonce_x": signature[:32].hex(), "milagro.batch.control_block": control.hex(),
            "milagro.batch.root": capture.batch.root.hex(), "milagro.batch.leaf": leaf.hex()}


@pytest.mark.parametrize("kx", ["yak", "ecdh"])
def test_batch_locators_show_position_and_merkle_path(captures, home, kx):
    capture = captures[kx]
    rows = fields(capture.pcap, home, *LOCATOR_FIELDS)
    client_hello, server_hello = sorted(rows)
    assert rows[client_hello] == expected_locator(capture.client.locator)
    assert rows[server_hello] == expected_locator(capture.server.locator)
    # The two slots are positions 0 and 1 of a three-leaf tree: each path has two hashes.
    assert [rows[f]["milagro.batch.position"] for f in (client_hello, server_hello)] == ["0", "1"]
    assert rows[client_hello]["milagro.merkle.path"] != rows[server_hello]["milagro.merkle.path"]
    verbose = run_tshark("-r", capture.pcap, "-V", "-O", "milagro", home=home).stdout
    txid = capture.batch.txid[::-1].hex()
    assert f"Locator (ServerHello), {len(capture.server.locator.encode())} bytes: regtest taproot-batch " \
           f"{txid}:0, position 1, leaf 1 of 3" in verbose
    assert "Body: taproot-batch slot" in verbose and "#2 Path hash" in verbose


@pytest.mark.parametrize("kx", ["yak", "ecdh"])
def test_batch_staples_show_the_slot_read_from_the_transaction(captures, home, kx):
    capture = captures[kx]
    rows = fields(capture.pcap, home, *SLOT_FIELDS, "milagro.point", "_ws.col.Info",
                  filter="milagro.batch")
    server_frame, client_frame = sorted(rows)
    for frame, pat in ((server_frame, capture.server), (client_frame, capture.client)):
        info = rows[frame].pop("_ws.col.Info")
        point = rows[frame].pop("milagro.point")
        assert rows[frame] == expected_slot(capture, pat), pat.name
        position = pat.locator.batch_slot.position
        assert f"staple {pat.name} (pat) @ height " in info and f", batch slot {position} of 3 signed" in info
        # R = lift_x(sig[0:32]) is the point the PAT's key agreement uses: ECDH-BTC sends it.
        nonce_point = capture.locals[pat.name].nonce_point
        assert nonce_point[0] == 0x02 and nonce_point[1:].hex() == rows[frame]["milagro.batch.nonce_x"]
        assert (point == nonce_point.hex()) == (kx == "ecdh")
    verbose = run_tshark("-r", capture.pcap, "-V", "-O", "milagro", home=home).stdout
    assert "Taproot batch slot: input 0, position 1: 3 PAT keys, 2 signed, this slot signed" in verbose
    assert "Taproot batch slot: input 0, position 0: 3 PAT keys, 2 signed, this slot signed" in verbose
    assert "Malformed" not in verbose and "slot is empty" not in verbose


def _server_locator(capture: BatchCapture, body: bytes) -> bytes:
    """The server's locator with another body (built by hand: Locator refuses a bad one)."""
    fixed = capture.server.locator.encode()[:69]
    return fixed + len(body).to_bytes(2, "big") + body


def _on(kind, change):
    return lambda k, body: change(body) if k == kind else body


def test_a_locator_naming_the_empty_slot_is_shown_with_a_warning(captures, home, tmp_path):
    """The server claims position 2, the PAT that did not answer: the dissector reads an empty
    witness item there and says so (a verifier refuses it: BatchSlotEmpty)."""
    capture = captures["ecdh"]
    empty = Locator.taproot_batch(network=capture.server.locator.network, txid=capture.batch.txid, input_index=0,
                                  block_hash=capture.server.locator.block_hash, position=2,
                                  proof=capture.batch.tree.inclusion_proof(2)).encode()
    variant = rewrite(capture.conversation,
                      _on(HS_SERVER_HELLO, lambda body: replace_extension(body, LOCATOR_EXTENSION, empty)))
    by_stream = expert_rows(write_connections(tmp_path / "empty.pcap", [variant]), home)
    rows = fields(tmp_path / "empty.pcap", home, "milagro.batch.position", "milagro.batch.witness_index",
                  "milagro.batch.signature", "milagro.batch.pat_key", "_ws.expert.message", "_ws.col.Info",
                  filter="milagro.batch.empty")
    (frame, row), = rows.items()
    assert row["milagro.batch.position"] == "2" and row["milagro.batch.witness_index"] == "0"
    assert row["milagro.batch.signature"] == ""
    assert row["milagro.batch.pat_key"] == capture.batch.certificates[2].pubkey[1:].hex()
    assert "The PAT's slot is empty: this batch did not anchor it" in row["_ws.expert.message"]
    assert "Malformed" not in row["_ws.expert.message"]
    assert ", batch slot 2 of 3 EMPTY" in row["_ws.col.Info"]
    assert [r["frame"] for r in by_stream[0]] and all("Malformed" not in r["_ws.expert.message"] for r in by_stream[0])


def test_malformed_batch_bodies_and_leaves_give_expert_info(captures, home, tmp_path):
    capture = captures["yak"]
    proof = capture.server.locator.batch_slot.proof
    good = capture.server.locator.batch_slot.encode()
    header = (1).to_bytes(2, "big")
    path = b"".join(proof.path)
    bodies = {
        "no body": (b"", "taproot-batch locator without a body"),
        "no position": (b"\x00", "taproot-batch body of 1 bytes has no position"),
        "short header": (header + b"\x00" * 5, "inclusion proof is 5 bytes, shorter than its 9-byte header"),
        "cut path": (good[:-1], f"inclusion proof is {len(good) - 3} bytes; a path of 2 hashes needs {len(good) - 2}"),
        "index outside": (header + (3).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\x02" + path,
                          "inclusion proof index 3 out of range for size 3"),
        "wrong depth": (header + (1).to_bytes(4, "big") + (9).to_bytes(4, "big") + b"\x02" + path,
                        "inclusion proof path has 2 hashes; leaf 1 of 9 needs 4"),
    }
    conversations = [rewrite(capture.conversation,
                             _on(HS_SERVER_HELLO, lambda body, b=b: replace_extension(
                                 body, LOCATOR_EXTENSION, _server_locator(capture, b))))
                     for b, _ in bodies.values()]
    # The leaf in the server's staple with its second key's OP_CHECKSIG turned into OP_CHECKSIGADD.
    leaf = capture.witness[-2]
    broken = leaf[:67] + b"\xba" + leaf[68:]
    assert leaf[67] == 0xAC
    conversations.append(rewrite(capture.conversation,
                                 _on(HS_SERVER_KEY_EXCHANGE, lambda body: body.replace(leaf, broken))))
    by_stream = expert_rows(write_connections(tmp_path / "bodies.pcap", conversations), home)
    for stream, (name, (_, says)) in enumerate(bodies.items()):
        server_hello = by_stream[stream][1]
        assert f"Malformed milagro message: {says}" in server_hello["_ws.expert.message"], (name, server_hello)
        assert ", malformed locator" in server_hello["_ws.col.Info"], name
    ske = by_stream[len(bodies)][1]
    assert "Malformed milagro message: leaf item 1 is not `20 <key> ac`" in ske["_ws.expert.message"]
    assert ske["_ws.col.Info"].endswith("; Malformed milagro ServerKeyExchange]")
    # The client's side of that connection still decodes, its staple's slot included.
    client_rows = fields(tmp_path / "bodies.pcap", home, "milagro.batch.witness_index", "milagro.batch.pat_key",
                         filter=f"tcp.stream == {len(bodies)} && milagro.batch.signature")
    assert list(client_rows.values()) == [{"milagro.batch.witness_index": "2",
                                           "milagro.batch.pat_key": capture.client.certificate.pubkey[1:].hex()}]


def test_lua_batch_constants_are_the_codes():
    from milagro_tls.chain import taproot
    from milagro_tls.identity import locator, marker
    text = LUA.read_text()
    assert f"local KIND_TAPROOT_BATCH = {locator.LocatorKind.TAPROOT_BATCH.value}" in text
    assert "local MERKLE_HEADER = 4 + 4 + 1" in text and len(InclusionProof(0, 1, ()).encode()) == 9
    assert re.search(r"local LEAF_ITEM = (\d+)", text).group(1) == str(taproot._KEY_ITEM)
    assert "0xad, 0xac, 0xba" in text and (taproot._CHECKSIGVERIFY, taproot._CHECKSIG, taproot._CHECKSIGADD) == \
        (0xAD, 0xAC, 0xBA)
    assert f'local MARKER_MAGIC = "{marker.MAGIC.hex()}"' in text
    assert marker.MarkerType.BATCH_ROOT.value == 2


def test_scapy_dissects_the_batch_locator_body(captures):
    """milagro_tls.capture.scapy_suites on the same capture: the kind-2 body as position and
    Merkle proof, and every packet rebuilds byte for byte."""
    from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
    from scapy.utils import rdpcap

    from milagro_tls.capture.scapy_suites import MilagroBatchSlot, TLS_Ext_MilagroLocator, decrypt_capture

    capture = captures["yak"]
    packets = list(decrypt_capture(capture.pcap, None))
    for hello_cls, pat in ((TLSClientHello, capture.client), (TLSServerHello, capture.server)):
        hello = next(p[hello_cls] for p in packets if hello_cls in p)
        ext = next(e for e in hello.ext if isinstance(e, TLS_Ext_MilagroLocator))
        slot = ext.batch_slot
        proof = pat.locator.batch_slot.proof
        assert isinstance(slot, MilagroBatchSlot) and ext.kind == 2 and bytes(ext.body) == pat.locator.body
        assert (slot.position, slot.index, slot.size, slot.count) == \
            (pat.locator.batch_slot.position, proof.index, proof.size, len(proof.path))
        assert [bytes(h) for h in slot.path] == list(proof.path)
        assert bytes(slot) == pat.locator.body
    raw = rdpcap(str(capture.pcap))
    assert [bytes(packet) for packet in raw] == [packet.original for packet in raw]

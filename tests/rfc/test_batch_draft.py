"""The draft's taproot batch section and its vectors are the code's.

The vectors (rfc/render_vectors.py from tests/vectors/batch.json and merkle.json) are recomputed
here with milagro_tls itself: leaf, tapleaf hash, output key and control block (chain.taproot), the
script-path sighash and every signature, the witness layout as the verifier reads it
(chain.batchverify), the PAT's k (ciphersuites.nonce), the locator (identity.locator) and the Merkle
tree (merkle). test_clean_room.py recomputes the same records from the draft's text alone. The
constants the section states are compared with the code's.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import coincurve
import pytest

from milagro_tls.chain import taproot
from milagro_tls.chain.batchverify import batch_root, read_batch_input
from milagro_tls.chain.hashes import to_display_hex
from milagro_tls.chain.proof import SpentOutput
from milagro_tls.chain.tx import parse_tx, txid_of
from milagro_tls.ciphersuites.nonce import schnorr_nonce_point, schnorr_owner_nonce
from milagro_tls.handshake.messages import DEFAULT_MAX_STAPLE_SIZE
from milagro_tls.identity import batch as identity_batch
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.locator import Locator, LocatorKind
from milagro_tls import merkle

from test_draft import DRAFT, flat, section, vector_records

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _records(kind: str) -> list[dict[str, str]]:
    return [r for r in vector_records() if r.get("record") == kind]


def _one(kind: str) -> dict[str, str]:
    (record,) = _records(kind)
    return record


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def _pat_keys(record) -> list[bytes]:
    return [_hex(record[f"pat_{i}_key"]) for i in range(3)]


# ---------------------------------------------------------------- the vectors, by the code

def test_batch_json_is_what_the_generator_makes():
    spec = importlib.util.spec_from_file_location("generate_batch_vectors", VECTORS / "generate_batch_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate() == json.loads((VECTORS / "batch.json").read_text())


def test_batch_form_vector_is_the_codes():
    record = _one("batch")
    tbs, keys = _hex(record["tbs_key"]), _pat_keys(record)
    leaf = taproot.leaf_script(tbs, keys)
    assert leaf.hex() == record["leaf_script"] and taproot.parse_leaf(leaf) == (tbs, tuple(keys))
    assert taproot.tapleaf_hash(leaf).hex() == record["tapleaf_hash"]
    q, parity = taproot.output_key(tbs, taproot.tapleaf_hash(leaf))
    assert (q.hex(), f"{parity:02x}") == (record["output_key"], record["output_parity"])
    script_pubkey, control = taproot.batch_output(tbs, leaf)
    assert (script_pubkey.hex(), control.hex()) == (record["script_pubkey"], record["control_block"])
    assert taproot.check_control_block(control, leaf, script_pubkey) == tbs


def test_batch_signing_vector_is_the_codes():
    record = _one("batch-signing")
    leaf, tbs, keys = _hex(record["leaf_script"]), _hex(record["tbs_key"]), _pat_keys(record)
    spent = [SpentOutput(int(record["spent_value"], 16), _hex(record["script_pubkey"]))]
    unsigned = parse_tx(_hex(record["unsigned_tx"]))
    sighash = taproot.script_path_sighash(unsigned, 0, spent, leaf)
    assert sighash.hex() == record["sighash"]
    assert batch_root(unsigned).hex() == record["batch_root"]
    for i, key in enumerate(keys):
        assert taproot.verify_schnorr(key, _hex(record[f"pat_{i}_signature"]), sighash)
    assert taproot.verify_schnorr(tbs, _hex(record["tbs_signature"]), sighash)
    signed = parse_tx(_hex(record["batch_tx"]))
    assert txid_of(signed) == txid_of(unsigned)                  # the witness is not in the txid
    view = read_batch_input(signed, 0)
    absent = {int(i) for i in record["absent"].split(",")}
    assert view.pat_keys == tuple(keys) and view.leaf == leaf and view.control_block.hex() == record["control_block"]
    assert view.tbs_signature.hex() == record["tbs_signature"]
    assert [s.hex() for s in view.signatures] == ["" if i in absent else record[f"pat_{i}_signature"] for i in range(3)]
    assert taproot.script_path_sighash(signed, 0, spent, leaf) == sighash


def test_batch_nonce_vector_is_the_codes():
    record = _one("batch-nonce")
    key = coincurve.PrivateKey(_hex(record["pat_private_key"]))
    assert key.public_key.format()[1:].hex() == record["pat_key"]
    k = schnorr_owner_nonce(key, _hex(record["signature"]), _hex(record["sighash"]))
    assert k.secret.hex() == record["nonce_k"]
    assert schnorr_nonce_point(_hex(record["signature"])).hex() == record["nonce_point"] == k.public_key.format().hex()


def test_batch_locator_vector_is_the_codes():
    record = _one("batch-locator")
    locator = Locator.decode(_hex(record["encoding"]))
    assert locator.kind is LocatorKind.TAPROOT_BATCH and locator.encode().hex() == record["encoding"]
    assert (locator.txid.hex(), locator.block_hash.hex()) == (record["txid"], record["block_hash"])
    slot = locator.batch_slot
    assert f"{slot.position:04x}" == record["position"]
    assert (f"{slot.proof.index:08x}", f"{slot.proof.size:08x}") == (record["merkle_index"], record["merkle_size"])
    assert b"".join(slot.proof.path).hex() == record["merkle_path"]
    certificate = BirthCertificate.parse(_hex(record["certificate"]))
    assert certificate.digest().hex() == record["certificate_sha256"]
    merkle.verify_inclusion(certificate.digest(), slot.proof, _hex(record["batch_root"]))
    # The locator's transaction is the signing record's batch, and its slot holds this PAT.
    signing = _one("batch-signing")
    assert to_display_hex(locator.txid) == txid_of(parse_tx(_hex(signing["batch_tx"])))[::-1].hex()
    assert certificate.pubkey[1:].hex() == signing[f"pat_{slot.position}_key"]
    assert certificate.batch_key.hex() == signing["tbs_key"]


def test_merkle_vectors_are_the_codes():
    assert _one("merkle-empty")["root"] == merkle.EMPTY_ROOT.hex()
    trees = _records("merkle-tree")
    assert trees
    for record in trees:
        size = int(record["size"], 16)
        leaves = [b"" if record[f"leaf_{i}"] == "(empty)" else _hex(record[f"leaf_{i}"]) for i in range(size)]
        assert [merkle.leaf_hash(leaf).hex() for leaf in leaves] == [record[f"leaf_hash_{i}"] for i in range(size)]
        assert merkle.merkle_root(leaves).hex() == record["root"]
    for record in _records("merkle-inclusion"):
        proof = merkle.InclusionProof.decode(_hex(record["encoding"]))
        assert (proof.index, proof.size) == (int(record["index"], 16), int(record["size"], 16))
        assert b"".join(proof.path).hex() == record["path"]
        leaf = b"" if record["leaf"] == "(empty)" else _hex(record["leaf"])
        merkle.verify_inclusion(leaf, proof, _hex(record["root"]))


# ---------------------------------------------------------------- the section's constants

BATCH_SECTIONS = ["batch", "batch-output", "batch-leaf", "batch-signing", "batch-witness", "merkle-tree",
                  "batch-locator", "batch-staple", "batch-verification", "batch-nonce", "batch-stripping",
                  "vectors-batch", "vectors-merkle"]


@pytest.mark.parametrize("anchor", BATCH_SECTIONS)
def test_draft_has_batch_section(anchor):
    assert re.search(rf"^#+ .*\{{#{re.escape(anchor)}\}}$", DRAFT, re.M), f"no section {{#{anchor}}}"


def test_leaf_template_and_bounds_are_the_codes():
    text = section("batch-leaf")
    ops = {name: int(op, 16) for name, op in re.findall(r"0x20 (T|K_0|K_i) 0x([0-9a-f]{2})", text)}
    assert ops == {"T": taproot._CHECKSIGVERIFY, "K_0": taproot._CHECKSIG, "K_i": taproot._CHECKSIGADD}
    assert f"1 <= N <= {taproot.MAX_LEAF_KEYS}" in text
    assert "34 + 34*N bytes" in flat(text) and taproot._KEY_ITEM == 34
    keys = [coincurve.PrivateKey().public_key.format()[1:] for _ in range(6)]
    assert len(taproot.leaf_script(keys[0], keys[1:])) == 34 + 34 * 5
    output = flat(section("batch-output"))
    assert f"leaf version 0x{taproot.LEAF_VERSION:02x}" in output
    assert f"control_block = (0x{taproot.LEAF_VERSION:02x} | (y(Q) mod 2)) || P /* {taproot.CONTROL_BLOCK_SIZE} bytes */" \
        in output


def test_merkle_tags_and_encoding_are_the_codes():
    text = section("merkle-tree")
    assert f'TaggedHash("{merkle.LEAF_TAG}", uint32(len(d)) || d)' in text
    assert f'TaggedHash("{merkle.NODE_TAG}", l || r)' in text
    assert f'TaggedHash("{merkle.EMPTY_TAG}", "")' in text
    proof = merkle.inclusion_proof([b"a", b"b", b"c"], 2)
    raw = proof.encode()
    assert raw[:4] == (2).to_bytes(4, "big") and raw[4:8] == (3).to_bytes(4, "big") and raw[8] == len(proof.path)
    assert "uint32 index;" in text and "uint32 size;" in text and "uint8  count;" in text


def test_batch_defaults_in_the_text_are_the_codes():
    signing = flat(section("batch-signing"))
    assert f"at most {identity_batch.DEFAULT_MAX_PATS} PATs in one transaction by default" in signing
    assert "hash type SIGHASH_DEFAULT (0x00)" in signing and "codesep_pos 0xffffffff" in signing
    staple = flat(section("batch-staple"))
    assert f"a batch of {identity_batch.DEFAULT_MAX_PATS} PATs" in staple
    measured = int(re.search(r"certificate and proof are (\d+) bytes", staple).group(1))
    assert measured <= DEFAULT_MAX_STAPLE_SIZE
    assert "{{batch}}" in flat(DRAFT[DRAFT.index("| batch_key |"):DRAFT.index("{: #tab-certificate")])
    assert "is reserved" not in flat(section("locator"))

"""The batch form without a chain: leaf template, tapleaf hash, output key and control block against
independent computations, the kind-2 locator's bytes, the weight formula, the wire JSON of
requests and responses, and the owner's Schnorr nonce (both key parities)."""
from __future__ import annotations

import hashlib

import coincurve
import pytest

from milagro_tls.chain.network import Network
from milagro_tls.chain.proof import SpentOutput
from milagro_tls.chain.taproot import (LeafTemplateError, batch_output, check_control_block, leaf_script,
                                       output_key, parse_leaf, tapleaf_hash)
from milagro_tls.ciphersuites.nonce import N, InvalidNonceInput, schnorr_nonce_point, schnorr_owner_nonce
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.batch import SigningRequest, SigningResponse, batch_fee, batch_weight
from milagro_tls.identity.locator import BatchSlotRef, Locator, LocatorKind
from milagro_tls.merkle import InclusionProof, inclusion_proof

from .support import tagged, tapleaf


def _xonly(seed: int) -> bytes:
    return coincurve.PrivateKey(hashlib.sha256(bytes([seed])).digest()).public_key.format()[1:]


TBS = _xonly(0)
PATS = [_xonly(i) for i in range(1, 5)]


def test_leaf_is_the_template_byte_for_byte():
    leaf = leaf_script(TBS, PATS)
    expected = (b"\x20" + TBS + b"\xad" + b"\x20" + PATS[0] + b"\xac"
                + b"".join(b"\x20" + k + b"\xba" for k in PATS[1:]))
    assert leaf == expected and len(leaf) == 34 + 34 * len(PATS)
    assert parse_leaf(leaf) == (TBS, tuple(PATS))


@pytest.mark.parametrize("mutate", [
    lambda s: s + b"\x51\xa2",                       # the optional tail is not our template
    lambda s: s[:-1],
    lambda s: s[:33] + b"\xac" + s[34:],             # TBS CHECKSIG instead of CHECKSIGVERIFY
    lambda s: s[:67] + b"\xba" + s[68:],             # PAT 0 with CHECKSIGADD
    lambda s: s[:101] + b"\xac" + s[102:],           # PAT 1 with CHECKSIG
    lambda s: s[:34] + b"\x21" + s[35:],             # a 33-byte push
    lambda s: s[:34],                                # no PAT at all
], ids=["tail", "truncated", "tbs-checksig", "pat0-add", "pat1-checksig", "push33", "no-pat"])
def test_parse_leaf_refuses_anything_else(mutate):
    with pytest.raises(LeafTemplateError):
        parse_leaf(mutate(leaf_script(TBS, PATS)))


def test_leaf_refuses_duplicates_bad_keys_and_sizes():
    with pytest.raises(LeafTemplateError, match="twice"):
        leaf_script(TBS, [PATS[0], PATS[0]])
    with pytest.raises(LeafTemplateError, match="1 to 998"):
        leaf_script(TBS, [])
    with pytest.raises(LeafTemplateError, match="curve point"):
        leaf_script(TBS, [b"\x00" * 32])


def test_tapleaf_output_key_and_control_block_match_an_independent_computation():
    leaf = leaf_script(TBS, PATS)
    assert tapleaf_hash(leaf) == tapleaf(leaf)
    # Q = lift_x(P) + t·G through coincurve's full-point API (not the x-only tweak the code uses).
    t = tagged("TapTweak", TBS + tapleaf(leaf))
    q = coincurve.PublicKey(b"\x02" + TBS).add(t).format()
    script_pubkey, control = batch_output(TBS, leaf)
    assert script_pubkey == b"\x51\x20" + q[1:]
    assert control == bytes([0xC0 | (q[0] - 2)]) + TBS
    assert output_key(TBS, tapleaf(leaf)) == (q[1:], q[0] - 2)
    assert check_control_block(control, leaf, script_pubkey) == TBS
    with pytest.raises(LeafTemplateError):
        check_control_block(bytes([control[0] ^ 1]) + control[1:], leaf, script_pubkey)   # parity
    with pytest.raises(LeafTemplateError):
        check_control_block(control, leaf_script(TBS, PATS[:3]), script_pubkey)            # other leaf
    with pytest.raises(LeafTemplateError):
        check_control_block(control + b"\x00" * 32, leaf, script_pubkey)                   # a path


def test_weight_formula_matches_the_measured_design():
    # batch-anchoring.md §2: W = 669 + c(N+3) + c(36+34N) + 99·s + 35·(N−s) with the 2-byte `51 a2`
    # tail, which our leaf leaves out (2 WU less): 3,841 -> 3,839 WU at N = 32, 13,345 -> 13,343 at 128.
    assert batch_weight(32, 32) == 669 + 1 + 3 + 99 * 32 - 2 == 3839
    assert batch_weight(128, 128) == 669 + 1 + 3 + 99 * 128 - 2 == 13343
    assert batch_weight(128, 96) == 13343 - 32 * 64           # each absent PAT saves 64 WU
    assert batch_weight(128, 128) - batch_weight(127, 127) == 99
    assert batch_fee(128, 1.0) == 3336 and batch_fee(128, 2.5) == 8340


def _proof() -> InclusionProof:
    return inclusion_proof([bytes([i]) * 32 for i in range(5)], 3)


def test_kind_2_locator_binary_form():
    proof = _proof()
    txid, block = bytes(range(32)), bytes(range(32, 64))
    loc = Locator.taproot_batch(network=Network.REGTEST, txid=txid, input_index=1, block_hash=block,
                                position=258, proof=proof)
    body = b"\x01\x02" + (3).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([len(proof.path)]) + b"".join(proof.path)
    assert loc.encode() == (b"\x01\x04\x02" + txid + b"\x00\x01" + block + len(body).to_bytes(2, "big") + body)
    assert Locator.decode(loc.encode()) == loc
    assert Locator.from_json(loc.to_json()) == loc
    assert loc.batch_slot == BatchSlotRef(258, proof)
    assert loc.to_json()["kind"] == "taproot-batch"


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x01" + _proof().encode()[:-1],
                                  b"\x00\x01" + _proof().encode() + b"\x00",
                                  b"\x00\x01" + (9).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x00"],
                         ids=["empty", "short", "cut-path", "trailing", "index-beyond-size"])
def test_kind_2_locator_refuses_a_body_that_is_not_one_slot(body):
    fixed = b"\x01\x04\x02" + bytes(32) + b"\x00\x00" + bytes(32) + len(body).to_bytes(2, "big")
    with pytest.raises(MalformedInput):
        Locator.decode(fixed + body)


def test_kind_1_locator_is_unchanged_and_has_no_batch_slot():
    loc = Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=bytes(32), input_index=0,
                  block_hash=bytes(32))
    assert loc.encode() == b"\x01\x04\x01" + bytes(32) + b"\x00\x00" + bytes(32) + b"\x00\x00"
    with pytest.raises(MalformedInput):
        loc.batch_slot


def test_request_and_response_json_round_trip_and_refuse_extras():
    request = SigningRequest(tx=bytes.fromhex("0200000000"), spent_outputs=(SpentOutput(1000, b"\x51\x20" + TBS),),
                             input_index=0, leaf=leaf_script(TBS, PATS), position=2, proof=_proof())
    assert SigningRequest.from_json(request.to_json()) == request
    response = SigningResponse(txid=bytes(range(32)), input_index=0, position=2, signature=bytes(64))
    assert SigningResponse.from_json(response.to_json()) == response
    for doc in ({**request.to_json(), "extra": 1}, {**request.to_json(), "position": "2"},
                {**request.to_json(), "proof": {"index": 9, "size": 5, "path": []}}):
        with pytest.raises(MalformedInput):
            SigningRequest.from_json(doc)
    with pytest.raises(MalformedInput):
        SigningResponse.from_json({**response.to_json(), "signature": "zz"})


def _key_with_parity(odd: bool) -> coincurve.PrivateKey:
    seed = 0
    while True:
        seed += 1
        key = coincurve.PrivateKey(hashlib.sha256(b"parity" + bytes([seed])).digest())
        if (key.public_key.format()[0] == 3) == odd:
            return key


@pytest.mark.parametrize("odd", [False, True], ids=["even-y", "odd-y"])
def test_owner_nonce_is_s_minus_e_d_and_its_point_is_lift_x(odd):
    key = _key_with_parity(odd)
    message = hashlib.sha256(b"sighash").digest()
    signature = key.sign_schnorr(message, aux_randomness=bytes(32))
    nonce = schnorr_owner_nonce(key, signature, message)
    # Independent check with plain integers (test code only): k = s − e·d′ mod n.
    d = int.from_bytes(key.secret, "big")
    d_even = d if not odd else N - d
    e = int.from_bytes(tagged("BIP0340/challenge", signature[:32] + key.public_key.format()[1:] + message), "big") % N
    assert int.from_bytes(nonce.secret, "big") == (int.from_bytes(signature[32:], "big") - e * d_even) % N
    assert nonce.public_key.format() == schnorr_nonce_point(signature) == b"\x02" + signature[:32]
    # Not this key's signature over this message: refused, not a wrong k.
    with pytest.raises(InvalidNonceInput):
        schnorr_owner_nonce(key, signature, hashlib.sha256(b"other").digest())
    with pytest.raises(InvalidNonceInput):
        schnorr_owner_nonce(_key_with_parity(not odd), signature, message)

"""Property tests of the binary wire formats: locator (and the TLS locator extension), Merkle
inclusion proofs and batch slots, the anchor proof a handshake staples, the ECDH-BTC / YAK-BTC
key-exchange bodies with their staple, and the NIZK, point and scalar parsers."""
from __future__ import annotations

import json
from pathlib import Path

import coincurve
from hypothesis import given
from hypothesis import strategies as st

from milagro_tls.chain.network import Network
from milagro_tls.chain.proof import MAX_DEPTH, AnchorProof, SpentOutput
from milagro_tls.ciphersuites import nizk
from milagro_tls.ciphersuites.errors import InvalidPoint, InvalidProof, InvalidScalar, KeyAgreementError
from milagro_tls.ciphersuites.points import parse_point, parse_scalar
from milagro_tls.ciphersuites.registry import SUITES, KeyExchangeKind
from milagro_tls.errors import MalformedInput
from milagro_tls.handshake.errors import HandshakeError, MalformedMessage
from milagro_tls.handshake.hello import parse_message
from milagro_tls.handshake.messages import (DEFAULT_MAX_STAPLE_SIZE, BitcoinClientKeyExchange,
                                            BitcoinServerKeyExchange, Staple)
from milagro_tls.handshake.peer import parse_unverified_locator
from milagro_tls.identity.locator import BatchSlotRef, Locator, LocatorKind
from milagro_tls.merkle import InclusionProof, MerkleProofError, MerkleTree

from .support import fuzz, mutated, parses_or_refuses, roundtrip

VECTORS = Path(__file__).parent.parent / "vectors"
LOCATOR_SEEDS = [bytes.fromhex(v["binary_hex"]) for v in json.loads((VECTORS / "locators.json").read_text())["valid"]]


# --- strategies of valid values -------------------------------------------------------------------

hashes = st.binary(min_size=32, max_size=32)


@st.composite
def inclusion_proofs(draw):
    size = draw(st.integers(1, 300))
    index = draw(st.integers(0, size - 1))
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    return MerkleTree(leaves).inclusion_proof(index)


@st.composite
def locators(draw):
    common = dict(network=draw(st.sampled_from(list(Network))), txid=draw(hashes),
                  input_index=draw(st.integers(0, 0xFFFF)), block_hash=draw(hashes))
    if draw(st.booleans()):
        return Locator(kind=LocatorKind.P2WPKH, **common)
    return Locator.taproot_batch(position=draw(st.integers(0, 0xFFFF)), proof=draw(inclusion_proofs()), **common)


@st.composite
def anchor_proofs(draw):
    depth = draw(st.integers(0, 4))
    branch = st.lists(hashes, min_size=depth, max_size=depth).map(tuple)
    return AnchorProof(height=draw(st.integers(0, 2**32 - 1)), header=draw(st.binary(min_size=80, max_size=80)),
                       tx_index=draw(st.integers(0, 2**32 - 1)), txid_branch=draw(branch),
                       coinbase_branch=draw(branch), wtxid_branch=draw(branch),
                       tx=draw(st.binary(max_size=300)), coinbase=draw(st.binary(max_size=120)),
                       spent_outputs=tuple(draw(st.lists(st.builds(
                           SpentOutput, st.integers(0, 2**64 - 1), st.binary(max_size=40)), max_size=3))))


_KEY = coincurve.PrivateKey(b"\x01" * 32)
POINTS = [coincurve.PrivateKey(bytes([i]) * 32).public_key.format() for i in range(1, 4)]


def _proof():
    return nizk.prove(_KEY, b"user", b"other", nonce=coincurve.PrivateKey(b"\x02" * 32))


@st.composite
def key_exchange_messages(draw):
    """(message class, suite, with_staple, wire bytes) of a well-formed SKE or CKE."""
    suite = draw(st.sampled_from(sorted(SUITES.values(), key=lambda s: s.code)))
    server = draw(st.booleans())
    with_staple = True if server else draw(st.booleans())
    staple = Staple(draw(st.binary(min_size=1, max_size=200)), draw(st.binary(min_size=1, max_size=200))) \
        if with_staple else None
    proof = _proof() if suite.key_exchange is KeyExchangeKind.YAK_BTC else None
    cls = BitcoinServerKeyExchange if server else BitcoinClientKeyExchange
    raw = bytes(cls(suite).create(draw(st.sampled_from(POINTS)), proof, staple).write())
    return cls, suite, with_staple, raw


def _parse_kex(cls, suite, with_staple, raw, max_staple_size=DEFAULT_MAX_STAPLE_SIZE):
    options = {"max_staple_size": max_staple_size}
    if cls is BitcoinClientKeyExchange:
        options["with_staple"] = with_staple
    return parse_message(cls(suite), raw, **options)


# --- locator and the locator extension ----------------------------------------------------------

@roundtrip
@given(locators())
def test_locator_roundtrips_binary_and_json(locator):
    assert Locator.decode(locator.encode()) == locator
    assert Locator.from_json(json.loads(json.dumps(locator.to_json()))) == locator
    if locator.kind is LocatorKind.TAPROOT_BATCH:
        assert locator.batch_slot.encode() == locator.body


@fuzz
@given(st.one_of(st.binary(max_size=200), st.sampled_from(LOCATOR_SEEDS).flatmap(mutated),
                 locators().map(Locator.encode).flatmap(mutated)))
def test_locator_decode_refuses_with_malformed_input_only(raw):
    locator = parses_or_refuses(Locator.decode, raw, MalformedInput)
    if locator is not None:
        assert locator.encode() == raw          # one encoding: what parses re-encodes to itself


@fuzz
@given(st.one_of(st.binary(max_size=120), locators().map(Locator.encode).flatmap(mutated)))
def test_locator_extension_is_decode_error_or_a_locator(raw):
    # The handshake's boundary: a bad locator extension is decode_error (50), nothing else.
    locator = parses_or_refuses(parse_unverified_locator, raw, MalformedMessage)
    assert locator is None or locator.encode() == raw


@fuzz
@given(st.one_of(st.binary(max_size=300), inclusion_proofs().map(InclusionProof.encode).flatmap(mutated)))
def test_inclusion_proof_and_batch_slot_decode(raw):
    proof = parses_or_refuses(InclusionProof.decode, raw, MerkleProofError)
    assert proof is None or proof.encode() == raw
    slot = parses_or_refuses(BatchSlotRef.decode, raw, MalformedInput)
    assert slot is None or slot.encode() == raw


# --- the stapled anchor proof -------------------------------------------------------------------

@roundtrip
@given(anchor_proofs())
def test_anchor_proof_roundtrips(proof):
    assert AnchorProof.decode(proof.encode()) == proof


@fuzz
@given(st.one_of(st.binary(max_size=400), anchor_proofs().map(AnchorProof.encode).flatmap(mutated)),
       st.integers(0, 2000))
def test_anchor_proof_decode_refuses_with_malformed_input_only(raw, max_size):
    proof = parses_or_refuses(lambda data: AnchorProof.decode(data, max_size=max_size), raw, MalformedInput)
    if proof is not None:
        assert len(raw) <= max_size and proof.encode() == raw
        assert len(proof.txid_branch) <= MAX_DEPTH


# --- key-exchange bodies (SKE / CKE) with NIZK and staple ---------------------------------------

@roundtrip
@given(key_exchange_messages())
def test_key_exchange_messages_roundtrip(case):
    cls, suite, with_staple, raw = case
    message = _parse_kex(cls, suite, with_staple, raw)
    assert bytes(message.write()) == raw


@fuzz
@given(key_exchange_messages().flatmap(lambda case: st.tuples(st.just(case), mutated(case[3]))),
       st.integers(2, DEFAULT_MAX_STAPLE_SIZE))
def test_key_exchange_bodies_are_decode_error_or_parse(case_and_raw, max_staple_size):
    (cls, suite, with_staple, _), raw = case_and_raw
    message = parses_or_refuses(lambda data: _parse_kex(cls, suite, with_staple, data, max_staple_size),
                                raw, MalformedMessage)
    if message is not None:
        assert (message.staple is not None) == with_staple
        if message.staple is not None:
            assert len(message.staple.certificate) + len(message.staple.proof) <= max_staple_size
        assert (message.proof is not None) == (suite.key_exchange is KeyExchangeKind.YAK_BTC)


@fuzz
@given(st.binary(max_size=100), st.binary(max_size=100),
       st.one_of(st.binary(max_size=40), st.sampled_from(POINTS).flatmap(mutated)))
def test_nizk_verify_refuses_with_key_agreement_errors_only(commitment, response, point):
    # A proof from the wire: any commitment/response bytes against any public point.
    parses_or_refuses(lambda p: nizk.verify(p, nizk.SchnorrProof(commitment, response), b"u", b"o"),
                      point, KeyAgreementError)


@fuzz
@given(st.sampled_from([0, 1, 2]).map(lambda i: (_proof(), POINTS[0])).flatmap(
    lambda pp: st.tuples(mutated(pp[0].commitment), mutated(pp[0].response), mutated(pp[1]))))
def test_nizk_mutations_never_verify(parts):
    commitment, response, point = parts
    proof = _proof()
    if (commitment, response, point) == (proof.commitment, proof.response, _KEY.public_key.format()):
        return
    try:
        nizk.verify(point, nizk.SchnorrProof(commitment, response), b"user", b"other")
    except (InvalidPoint, InvalidScalar, InvalidProof):
        return
    raise AssertionError("a mutated proof verified")


def test_the_unmutated_proof_verifies():
    # The positive control of the property above: the proof it mutates is valid.
    nizk.verify(_KEY.public_key.format(), _proof(), b"user", b"other")


@fuzz
@given(st.binary(max_size=70))
def test_point_and_scalar_parsers(raw):
    point = parses_or_refuses(parse_point, raw, InvalidPoint)
    assert point is None or point.format() == raw
    scalar = parses_or_refuses(parse_scalar, raw, InvalidScalar)
    assert scalar is None or scalar.to_bytes(32, "big") == raw


def test_handshake_errors_are_what_the_boundary_raises():
    # parse_message turns every parser failure into MalformedMessage (decode_error), which the
    # properties above rely on; a HandshakeError is passed through unchanged.
    assert issubclass(MalformedMessage, HandshakeError)
    try:
        _parse_kex(BitcoinServerKeyExchange, SUITES[0xFF20], True, b"\x0c\x00\x00\x01\x00")
    except MalformedMessage as exc:
        assert exc.alert == 50
    else:
        raise AssertionError("a truncated SKE parsed")

"""Property tests of the JSON documents peers exchange: the birth certificate (bytes and JSON),
Merkle inclusion / non-membership proofs in JSON, the batch signing request and response, the
sealed enrolment request and the sealed, signed instruction set."""
from __future__ import annotations

import json
from pathlib import Path

import coincurve
import ecies
import rfc8785
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from milagro_tls.chain.network import Network
from milagro_tls.chain.proof import AnchorProof
from milagro_tls.enrolment.errors import InstructionsRefused, MalformedEnrolment, MalformedInstructions
from milagro_tls.enrolment.instructions import (NONCE_SIZE, InstructionSet, InstructionTrust, _associated_data,
                                                _HEADER, open_instructions, seal_instructions)
from milagro_tls.enrolment.request import ECIES, open_enrolment, seal_enrolment
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.batch import SigningRequest, SigningResponse
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.keys import IdentityKey, StatementType
from milagro_tls.identity.locator import Locator, LocatorKind
from milagro_tls.merkle import (InclusionProof, MerkleProofError, MerkleTree, NonMembershipProof,
                                non_membership_proof, verify_non_membership)

from .support import fuzz, json_bytes, json_values, mutated, mutated_json, parses_or_refuses, roundtrip

VECTORS = Path(__file__).parent.parent / "vectors"
CERTIFICATES = [bytes.fromhex(v["canonical_hex"]) for v in json.loads((VECTORS / "certificates.json").read_text())["valid"]]
PAT_CERTIFICATE = next(BirthCertificate.parse(raw) for raw in CERTIFICATES if BirthCertificate.parse(raw).role == "pat")
SERVICE_CERTIFICATE = next(BirthCertificate.parse(raw) for raw in CERTIFICATES
                           if BirthCertificate.parse(raw).role != "pat")


# --- birth certificate --------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@fuzz
@given(st.one_of(st.sampled_from(CERTIFICATES).flatmap(mutated), st.binary(max_size=200),
                 st.sampled_from(CERTIFICATES).map(lambda raw: json.loads(raw)).flatmap(mutated_json).map(rfc8785.dumps),
                 st.integers(1, 8000).map(_nested)))
def test_certificate_parse_refuses_with_malformed_input_only(raw):
    cert = parses_or_refuses(BirthCertificate.parse, raw, MalformedInput)
    assert cert is None or cert.canonical_bytes() == raw


@fuzz
@given(st.one_of(json_values, st.sampled_from(CERTIFICATES).map(json.loads).flatmap(mutated_json)))
def test_certificate_from_json_refuses_with_malformed_input_only(doc):
    cert = parses_or_refuses(BirthCertificate.from_json, doc, MalformedInput)
    if cert is not None:
        assert BirthCertificate.parse(cert.canonical_bytes()) == cert


def test_deeply_nested_certificate_is_malformed_input():
    # Finding: json.loads raised RecursionError inside the 8 KiB bound, so a staple's certificate
    # made a handshake fail with internal_error and a traceback instead of decode_error.
    raw = _nested(4000)
    assert len(raw) <= 8192
    try:
        BirthCertificate.parse(raw)
    except MalformedInput as exc:
        assert "not JSON" in str(exc)
    else:
        raise AssertionError("a deeply nested certificate parsed")


# --- Merkle proofs in JSON ----------------------------------------------------------------------

@st.composite
def non_membership_cases(draw):
    leaves = sorted(set(draw(st.lists(st.binary(min_size=1, max_size=4), max_size=40))))
    item = draw(st.binary(min_size=1, max_size=4).filter(lambda b: b not in leaves))
    return leaves, item


@roundtrip
@given(non_membership_cases())
def test_non_membership_proof_roundtrips_and_verifies(case):
    leaves, item = case
    proof = non_membership_proof(leaves, item)
    again = NonMembershipProof.from_json(json.loads(json.dumps(proof.to_json())))
    assert again == proof
    verify_non_membership(item, again, MerkleTree(leaves).root)


@fuzz
@given(non_membership_cases().flatmap(lambda c: st.tuples(
    st.just(c), mutated_json(non_membership_proof(*c).to_json()))))
def test_non_membership_json_refuses_or_proves_nothing_false(case_doc):
    (leaves, item), doc = case_doc
    proof = parses_or_refuses(NonMembershipProof.from_json, doc, MerkleProofError)
    if proof is None:
        return
    # Whatever parses must still not prove a member of the list absent.
    for member in leaves:
        try:
            verify_non_membership(member, proof, MerkleTree(leaves).root)
        except MerkleProofError:
            continue
        raise AssertionError(f"a mutated proof shows member {member.hex()} absent")


@fuzz
@given(st.one_of(json_values, st.builds(lambda n, i: MerkleTree([bytes([k]) for k in range(n)])
                                        .inclusion_proof(i % n).to_json(), st.integers(1, 60), st.integers(0, 60))
                 .flatmap(mutated_json)))
def test_inclusion_proof_json_refuses_with_merkle_error_only(doc):
    proof = parses_or_refuses(InclusionProof.from_json, doc, MerkleProofError)
    assert proof is None or InclusionProof.from_json(proof.to_json()) == proof


# --- batch signing request and response ---------------------------------------------------------

_TREE = MerkleTree([bytes([i]) * 32 for i in range(5)])
SIGNING_REQUEST = SigningRequest(tx=bytes(range(60)), spent_outputs=(), input_index=0, leaf=b"\x20" + b"\x01" * 32,
                                 position=3, proof=_TREE.inclusion_proof(3)).to_json()
SIGNING_REQUEST["spent_outputs"] = [{"value": 1000, "script_pubkey": "5120" + "ab" * 32}]
SIGNING_RESPONSE = SigningResponse(txid=b"\x07" * 32, input_index=0, position=1, signature=b"\x05" * 64).to_json()


@fuzz
@given(st.one_of(json_values, mutated_json(SIGNING_REQUEST)))
def test_signing_request_refuses_with_malformed_input_only(doc):
    request = parses_or_refuses(SigningRequest.from_json, doc, MalformedInput)
    assert request is None or SigningRequest.from_json(request.to_json()) == request


@fuzz
@given(st.one_of(json_values, mutated_json(SIGNING_RESPONSE)))
def test_signing_response_refuses_with_malformed_input_only(doc):
    response = parses_or_refuses(SigningResponse.from_json, doc, MalformedInput)
    assert response is None or SigningResponse.from_json(response.to_json()) == response


def test_signing_documents_parse_as_written():
    assert SigningRequest.from_json(SIGNING_REQUEST).to_json() == SIGNING_REQUEST
    assert SigningResponse.from_json(SIGNING_RESPONSE).to_json() == SIGNING_RESPONSE


# --- sealed enrolment request -------------------------------------------------------------------

TBS_ENROLMENT_KEY = coincurve.PrivateKey(b"\x11" * 32)
ENROLMENT = {"version": 1, "certificate": PAT_CERTIFICATE.canonical_bytes().decode(),
             "aes_key": "00" * 16, "nonce": "11" * 16}


def _seal(plaintext: bytes) -> bytes:
    return ecies.encrypt(TBS_ENROLMENT_KEY.public_key.format(), plaintext, ECIES)


def test_a_sealed_enrolment_opens():
    blob = seal_enrolment(TBS_ENROLMENT_KEY.public_key.format(), PAT_CERTIFICATE, b"\x00" * 16, nonce=b"\x11" * 16)
    request = open_enrolment(TBS_ENROLMENT_KEY, blob, batch_key=PAT_CERTIFICATE.batch_key)
    assert request.certificate == PAT_CERTIFICATE and request.aes_key == b"\x00" * 16


@fuzz
@given(st.one_of(mutated_json(ENROLMENT).map(json_bytes), json_values.map(json_bytes),
                 st.just(rfc8785.dumps(ENROLMENT)).flatmap(mutated), st.binary(max_size=100)))
def test_enrolment_plaintexts_refuse_with_malformed_enrolment_only(plaintext):
    parses_or_refuses(lambda blob: open_enrolment(TBS_ENROLMENT_KEY, blob), _seal(plaintext), MalformedEnrolment)


@fuzz
@given(st.one_of(st.binary(max_size=300), st.just(rfc8785.dumps(ENROLMENT)).map(_seal).flatmap(mutated)))
def test_enrolment_blobs_refuse_with_malformed_enrolment_only(blob):
    parses_or_refuses(lambda b: open_enrolment(TBS_ENROLMENT_KEY, b), blob, MalformedEnrolment)


# --- the sealed, signed instruction set ---------------------------------------------------------

TBS_KEY = IdentityKey(coincurve.PrivateKey(b"\x22" * 32))
AES_KEY = b"\x33" * 16
_LOCATOR = Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=b"\x01" * 32, input_index=0,
                   block_hash=b"\x02" * 32)
_PROOF = AnchorProof(height=7, header=b"\x00" * 80, tx_index=1, txid_branch=(b"\x03" * 32,),
                     coinbase_branch=(b"\x04" * 32,), wtxid_branch=(b"\x05" * 32,), tx=b"\x06" * 60,
                     coinbase=b"\x07" * 50, spent_outputs=())
INSTRUCTIONS = InstructionSet(version=3, tbs="tbs-one", group="default", dta_urls=("https://dta.example",),
                              trust=(InstructionTrust("svc", _LOCATOR, ("service",), SERVICE_CERTIFICATE, _PROOF),),
                              pat_locator=_LOCATOR, pat_proof=_PROOF, issued=1700000000)


def _sign_and_seal(body, version: int = 3) -> bytes:
    """Seal any body, signed by the TBS: what reaches the shape checks after tag and signature."""
    signature = TBS_KEY.sign_statement(StatementType.INSTRUCTIONS, rfc8785.dumps(body))
    plaintext = rfc8785.dumps({"body": body, "signature": signature.hex()})
    nonce = b"\x00" * NONCE_SIZE
    return _HEADER.pack(version) + nonce + AESGCM(AES_KEY).encrypt(nonce, plaintext, _associated_data(version))


def _open(blob: bytes) -> InstructionSet:
    return open_instructions(AES_KEY, blob, TBS_KEY.public_key, tbs_name=None)


def test_instructions_open_as_sealed():
    assert _open(seal_instructions(INSTRUCTIONS, TBS_KEY, AES_KEY)) == INSTRUCTIONS
    assert _open(_sign_and_seal(INSTRUCTIONS.to_json())) == INSTRUCTIONS


@fuzz
@given(mutated_json(INSTRUCTIONS.to_json()))
def test_signed_instruction_bodies_refuse_with_malformed_instructions_only(body):
    # The TBS signs it, so only the shape checks stand between this body and the PAT.
    try:
        blob = _sign_and_seal(body)
    except (ValueError, TypeError, OverflowError):   # rfc8785 cannot canonicalise it: never sent
        return
    instructions = parses_or_refuses(_open, blob, InstructionsRefused)
    assert instructions is None or InstructionSet.from_json(instructions.to_json()) == instructions


@fuzz
@given(st.one_of(st.binary(max_size=200), st.just(seal_instructions(INSTRUCTIONS, TBS_KEY, AES_KEY)).flatmap(mutated)))
def test_instruction_blobs_refuse_with_instructions_refused_only(blob):
    instructions = parses_or_refuses(_open, blob, InstructionsRefused)
    assert instructions is None or instructions == INSTRUCTIONS


@fuzz
@given(json_values)
def test_instruction_set_from_json_refuses_with_malformed_instructions_only(doc):
    parses_or_refuses(InstructionSet.from_json, doc, MalformedInstructions)

"""Instruction sets: sealed per PAT, signed by the TBS, refused when rolled back, forged or tampered,
and every entry verified against the caller's headers alone."""
import os
import struct

import pytest
import rfc8785
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.enrolment import (InstructionEntryInvalid, InstructionSet, InstructionsForged,
                                   InstructionsRollback, InstructionsTampered, InstructionTrust,
                                   MalformedInstructions, open_instructions, seal_instructions,
                                   sealed_version, verify_instruction_entries, verify_pat_anchor)
from milagro_tls.enrolment.instructions import AD_PREFIX
from milagro_tls.identity.keys import IdentityKey, StatementType
from milagro_tls.trust import TrustOrigin

AES_KEY = os.urandom(16)


def trust_item(world, name, *, as_name=None, roles=("dta",), proof_of=None):
    party = world.parties[name]
    return InstructionTrust(as_name or name, party.locator, tuple(roles), party.certificate,
                            world.identities[proof_of or name].proof)


def make_set(world, version=1, **changes):
    fields = dict(version=version, tbs="tbs.example", group="default",
                  dta_urls=("https://dta1.example:8443", "https://dta2.example:8443"),
                  trust=(trust_item(world, "echo.example", roles=("dta",)),
                         trust_item(world, "idp.example", roles=("idp",))),
                  pat_locator=world.parties["alice"].locator, pat_proof=world.identities["alice"].proof,
                  issued=1_700_000_000)
    fields.update(changes)
    return InstructionSet(**fields)


@pytest.fixture(scope="module")
def tbs(world):
    """The TBS's identity key: mallory.example's stands in (any anchored key will do)."""
    return world.parties["mallory.example"].key


def seal_raw(plaintext: bytes, version: int, key: bytes = AES_KEY) -> bytes:
    nonce = os.urandom(12)
    return struct.pack(">I", version) + nonce + AESGCM(key).encrypt(nonce, plaintext, AD_PREFIX + struct.pack(">I", version))


def signed_plaintext(body: dict, key: IdentityKey) -> bytes:
    signature = key.sign_statement(StatementType.INSTRUCTIONS, rfc8785.dumps(body))
    return rfc8785.dumps({"body": body, "signature": signature.hex()})


def test_round_trip_and_every_entry_verifies_against_headers(world, tbs):
    instructions = make_set(world, version=3)
    blob = seal_instructions(instructions, tbs, AES_KEY)
    assert sealed_version(blob) == 3
    opened = open_instructions(AES_KEY, blob, tbs.public_key, installed_version=2, tbs_name="tbs.example")
    assert opened == instructions
    entries = verify_instruction_entries(opened, world.headers(), pat_certificate=world.parties["alice"].certificate)
    assert [(e.name, sorted(e.roles), e.origin) for e in entries] == [
        ("echo.example", ["dta"], TrustOrigin.TBS), ("idp.example", ["idp"], TrustOrigin.TBS)]
    assert entries[0].locator == world.parties["echo.example"].locator
    identity = verify_pat_anchor(opened, world.parties["alice"].certificate, world.headers())
    assert identity.certificate.pubkey == world.parties["alice"].key.public_key


def test_a_rollback_is_refused(world, tbs):
    blob = seal_instructions(make_set(world, version=5), tbs, AES_KEY)
    with pytest.raises(InstructionsRollback, match="version 5 is not above the installed version 5") as info:
        open_instructions(AES_KEY, blob, tbs.public_key, installed_version=5)
    assert (info.value.version, info.value.installed) == (5, 5)
    with pytest.raises(InstructionsRollback, match="version 5 is not above the installed version 9"):
        open_instructions(AES_KEY, blob, tbs.public_key, installed_version=9)
    assert open_instructions(AES_KEY, blob, tbs.public_key, installed_version=4).version == 5


def test_a_set_signed_by_another_key_is_refused(world, tbs):
    other = IdentityKey.generate()
    blob = seal_instructions(make_set(world), other, AES_KEY)
    with pytest.raises(InstructionsForged, match="not signed by the TBS's anchored identity key"):
        open_instructions(AES_KEY, blob, tbs.public_key)
    # A signature over another statement type by the right key is no instruction signature either.
    body = make_set(world).to_json()
    wrong_type = tbs.sign_statement(StatementType.CANARY, rfc8785.dumps(body))
    blob = seal_raw(rfc8785.dumps({"body": body, "signature": wrong_type.hex()}), 1)
    with pytest.raises(InstructionsForged):
        open_instructions(AES_KEY, blob, tbs.public_key)


def test_an_altered_signed_body_is_refused(world, tbs):
    body = make_set(world).to_json()
    plaintext = signed_plaintext(body, tbs).replace(b"dta1.example", b"evil1.example")
    with pytest.raises(InstructionsForged):
        open_instructions(AES_KEY, seal_raw(plaintext, 1), tbs.public_key)


def test_a_bad_tag_is_refused(world, tbs):
    blob = bytearray(seal_instructions(make_set(world, version=2), tbs, AES_KEY))
    for where in (len(blob) - 1, 4, 40):          # tag, nonce, ciphertext
        flipped = bytearray(blob)
        flipped[where] ^= 0x80
        with pytest.raises(InstructionsTampered, match="tag mismatch"):
            open_instructions(AES_KEY, bytes(flipped), tbs.public_key)
    # The clear version is bound by the tag: raising it to get past a rollback check fails.
    bumped = struct.pack(">I", 7) + bytes(blob[4:])
    with pytest.raises(InstructionsTampered):
        open_instructions(AES_KEY, bumped, tbs.public_key, installed_version=2)
    # Another PAT's key (the set was sealed for someone else).
    with pytest.raises(InstructionsTampered):
        open_instructions(os.urandom(16), bytes(blob), tbs.public_key)


def test_clear_version_must_match_the_signed_version(world, tbs):
    plaintext = signed_plaintext(make_set(world, version=3).to_json(), tbs)
    with pytest.raises(MalformedInstructions, match="sealed version 4 differs from the signed version 3"):
        open_instructions(AES_KEY, seal_raw(plaintext, 4), tbs.public_key, installed_version=3)


def test_other_tbs_name_truncated_and_malformed_plaintexts(world, tbs):
    blob = seal_instructions(make_set(world), tbs, AES_KEY)
    with pytest.raises(MalformedInstructions, match="for TBS 'tbs.example', not 'other.example'"):
        open_instructions(AES_KEY, blob, tbs.public_key, tbs_name="other.example")
    with pytest.raises(MalformedInstructions, match="truncated"):
        open_instructions(AES_KEY, blob[:20], tbs.public_key)
    with pytest.raises(MalformedInstructions, match="is not JSON"):
        open_instructions(AES_KEY, seal_raw(b"not json", 1), tbs.public_key)
    with pytest.raises(MalformedInstructions, match=r"unknown \['x'\]"):
        open_instructions(AES_KEY, seal_raw(b'{"body":{},"signature":"00","x":1}', 1), tbs.public_key)
    with pytest.raises(MalformedInstructions, match="signature must be 64 bytes"):
        open_instructions(AES_KEY, seal_raw(b'{"body":{},"signature":"00"}', 1), tbs.public_key)
    # Signed by the TBS but not a well-formed set: the signature is checked first, then the shape.
    body = make_set(world).to_json()
    body["dta_urls"] = ["ftp://x"]
    with pytest.raises(MalformedInstructions, match="http\\(s\\) URLs"):
        open_instructions(AES_KEY, seal_raw(signed_plaintext(body, tbs), 1), tbs.public_key)
    body = make_set(world).to_json()
    body["trust"][0]["proof"] = "00"
    with pytest.raises(MalformedInstructions, match="trust entry 0"):
        open_instructions(AES_KEY, seal_raw(signed_plaintext(body, tbs), 1), tbs.public_key)
    body = make_set(world).to_json()
    body["version"] = True
    with pytest.raises(MalformedInstructions, match="instruction version must be an integer"):
        open_instructions(AES_KEY, seal_raw(signed_plaintext(body, tbs), 1), tbs.public_key)


def test_an_entry_whose_proof_is_another_partys_is_refused(world):
    bad = make_set(world, trust=(trust_item(world, "echo.example"),
                                 trust_item(world, "idp.example", proof_of="echo.example")))
    with pytest.raises(InstructionEntryInvalid, match=r"trust entry 1 \('idp.example'\): ProofMismatch"):
        verify_instruction_entries(bad, world.headers())


def test_an_entry_unknown_to_the_callers_headers_is_refused(world):
    empty = HeaderChain(":memory:", world.source.network)       # genesis only: nothing verifies
    with pytest.raises(InstructionEntryInvalid, match=r"trust entry 0 \('echo.example'\): UnknownBlock"):
        verify_instruction_entries(make_set(world), empty)


def test_the_pats_own_anchor_must_be_its_certificates(world):
    instructions = make_set(world)
    with pytest.raises(InstructionEntryInvalid, match="the PAT's own anchor"):
        verify_instruction_entries(instructions, world.headers(),
                                   pat_certificate=world.parties["echo.example"].certificate)
    without = make_set(world, pat_locator=None, pat_proof=None)
    with pytest.raises(InstructionEntryInvalid, match="carries no locator for this PAT"):
        verify_pat_anchor(without, world.parties["alice"].certificate, world.headers())
    # Without a certificate to check, only the trust entries are verified.
    assert len(verify_instruction_entries(without, world.headers())) == 2


def test_shallow_anchors_are_refused_with_a_higher_bar(world):
    tip = world.headers().tip()[0]
    need = tip + 10
    with pytest.raises(InstructionEntryInvalid, match="AnchorTooShallow"):
        verify_instruction_entries(make_set(world), world.headers(), min_confirmations=need)

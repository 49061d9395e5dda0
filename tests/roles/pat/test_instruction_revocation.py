"""The revocation status an instruction set carries (enrolment.instructions, issue 18), and the
TBS's seal check of its trust entries (roles.tbs.revocations.SealStatus), in-process on the
world's chain: the field round-trips signed and sealed, is absent (not null) in sets without
it, and is refused when malformed; an entry whose seal the source says is spent is left out."""
from __future__ import annotations

import copy
import hashlib
import os

import pytest

from milagro_tls.chain.revocation_list import answer_for
from milagro_tls.enrolment import InstructionSet, InstructionTrust, open_instructions, seal_instructions
from milagro_tls.enrolment.errors import MalformedInstructions
from milagro_tls.enrolment.instructions import EntrySeal, InstructionRevocation
from milagro_tls.roles.tbs.revocations import SealStatus, seal_of

AES_KEY = os.urandom(16)


def entry(world, name: str) -> InstructionTrust:
    party = world.parties[name]
    return InstructionTrust(name, party.locator, ("dta",), party.certificate, world.identities[name].proof)


def digest(n: int) -> bytes:
    return hashlib.sha256(b"listed %d" % n).digest()


def revocation(spender: bytes | None = None) -> InstructionRevocation:
    listed = [digest(1), digest(2)]
    pat = answer_for(listed, (), digest(3), (bytes(range(32)), 4))
    return InstructionRevocation(pat, (EntrySeal("idp.example", False), EntrySeal("echo.example", spender is not None,
                                                                                  spender)))


def make(world, **changes) -> InstructionSet:
    return InstructionSet(**{"version": 2, "tbs": "tbs-x", "group": "g", "trust": (entry(world, "echo.example"),),
                             **changes})


def test_the_status_round_trips_signed_and_sealed_and_is_absent_without_it(world):
    key = world.parties["mallory.example"].key
    carried = make(world, revocation=revocation(bytes(32)))
    opened = open_instructions(AES_KEY, seal_instructions(carried, key, AES_KEY), key.public_key)
    assert opened.revocation == carried.revocation and opened.to_json() == carried.to_json()
    doc = opened.revocation.to_json()
    assert doc["entries"] == {"echo.example": {"seal_spent": True, "spender": "00" * 32},
                              "idp.example": {"seal_spent": False, "spender": None}}
    assert doc["pat"]["revoked"] is False and doc["pat"]["link"]["number"] == 4
    assert opened.revocation.entry("echo.example").seal_spent and opened.revocation.entry("nobody") is None
    # A set without it is the body it always was: no "revocation" key at all.
    plain = make(world)
    assert "revocation" not in plain.to_json()
    assert open_instructions(AES_KEY, seal_instructions(plain, key, AES_KEY), key.public_key).revocation is None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(revocation=None), "revocation is not a JSON object"),
    (lambda d: d["revocation"].pop("entries"), "missing"),
    (lambda d: d["revocation"].update(extra=1), "unknown"),
    (lambda d: d["revocation"].update(pat={"revoked": "no"}), "revocation pat"),
    (lambda d: d["revocation"]["pat"].update(root="ab"), "revocation pat"),
    (lambda d: d["revocation"]["entries"]["echo.example"].update(seal_spent=False), "spent seal names its spender"),
    (lambda d: d["revocation"]["entries"]["idp.example"].update(spender="zz" * 32), "64-hex txid"),
    (lambda d: d["revocation"]["entries"]["idp.example"].update(seal_spent=1), "spent seal"),
    (lambda d: d["revocation"].update(entries=[]), "object of at most"),
])
def test_a_malformed_status_is_refused(world, mutate, message):
    doc = copy.deepcopy(make(world, revocation=revocation(bytes(32))).to_json())
    mutate(doc)
    with pytest.raises(MalformedInstructions, match=message):
        InstructionSet.from_json(doc)


class Source:
    """The TBS's chain source as far as seals go: one spent outpoint."""

    def __init__(self, spent: tuple[bytes, int], spender: bytes) -> None:
        self.spent, self.spender, self.asked = spent, spender, []

    def outspend_unverified(self, txid: bytes, vout: int):
        self.asked.append((txid, vout))
        return self.spender if (txid, vout) == self.spent else None


def test_an_entry_whose_seal_is_spent_is_left_out(world):
    echo, idp = entry(world, "echo.example"), entry(world, "idp.example")
    seal = seal_of(echo)
    assert seal is not None and seal[0] == echo.locator.txid
    source = Source(seal, b"\x07" * 32)
    clock = [0.0]
    seals = SealStatus(source, ttl=10, clock=lambda: clock[0])
    kept, status = seals.entries([echo, idp])
    assert kept == [idp]
    assert status == [EntrySeal("echo.example", True, b"\x07" * 32), EntrySeal("idp.example", False)]
    seals.entries([echo, idp])
    assert len(source.asked) == 2                  # cached within the ttl
    clock[0] = 11
    seals.entries([echo])
    assert len(source.asked) == 3


"""A party's own identity as its handshakes use it: the staple and the nonce key k.

The staple (canonical certificate + proof bundle) is built once, when the identity is
loaded, so that a handshake never touches the network (the peer verifies the staple
against its own header chain). k is recomputed from the published signature by Party.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import coincurve

from ..chain.hashes import to_display_hex
from ..chain.proof import AnchorProof, fetch_anchor_proof
from ..chain.source import ChainSource
from ..errors import IdentityError
from .certificate import BirthCertificate
from .locator import Locator
from .party import Party


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    certificate: BirthCertificate
    locator: Locator
    proof: AnchorProof
    nonce_key: coincurve.PrivateKey = field(repr=False)
    certificate_bytes: bytes = field(repr=False)
    proof_bytes: bytes = field(repr=False)

    @classmethod
    def create(cls, certificate: BirthCertificate, locator: Locator, proof: AnchorProof,
               nonce_key: coincurve.PrivateKey) -> "LocalIdentity":
        return cls(certificate, locator, proof, nonce_key, certificate.canonical_bytes(), proof.encode())

    @property
    def nonce_point(self) -> bytes:
        """R = k·G, compressed: exactly the point a verifier computes from the signature."""
        return self.nonce_key.public_key.format()

    @classmethod
    def from_party(cls, party: Party, source: ChainSource) -> "LocalIdentity":
        """Fetch the anchor's proof from ``source`` (once) and pair it with k."""
        if party.locator is None:
            raise IdentityError(f"identity {party.name} is not confirmed yet (run `milagro identity confirm`)")
        status = source.tx_status(party.locator.txid)
        if status.block_hash != party.locator.block_hash or status.height is None:
            raise IdentityError(
                f"anchor {to_display_hex(party.locator.txid)} is no longer in the block its locator names "
                "(a reorg?): run `milagro identity confirm` to record where it is now")
        proof = fetch_anchor_proof(source, party.locator.txid, party.locator.block_hash, status.height)
        return cls.create(party.certificate, party.locator, proof, party.nonce_key())

    @classmethod
    def load(cls, home: Path, name: str, source: ChainSource) -> "LocalIdentity":
        return cls.from_party(Party.load(home, name), source)

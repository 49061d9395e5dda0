"""A party's own identity as its handshakes use it: the staple and the nonce key k.

The staple (canonical certificate + proof bundle) is built once, when the identity is
loaded, so that a handshake never touches the network (the peer verifies the staple
against its own header chain). k is recomputed from the published signature: the ECDSA
anchor's by Party, a batch slot's BIP340 signature (read from the confirmed block) here.

``freshened(source)`` stamps the staple's proof with a freshness bound (chain.proof): the
source's tip, once the source said the seal is unspent (a revoked identity is not stapled).
It asks the source, so callers run it outside handshakes (the Context's ``refresh_staple``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import coincurve

from ..chain.batchverify import read_batch_input
from ..chain.hashes import to_display_hex
from ..chain.proof import AnchorProof, fetch_anchor_proof
from ..chain.source import ChainSource
from ..chain.taproot import script_path_sighash
from ..chain.tx import parse_tx
from ..ciphersuites.nonce import InvalidNonceInput
from ..errors import IdentityError
from .anchor import SEAL_VOUT
from .batchpat import BatchPat
from .certificate import BirthCertificate
from .locator import Locator, LocatorKind
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

    def freshened(self, source: ChainSource) -> "LocalIdentity":
        """This identity with its staple stamped at ``source``'s tip (chain.proof's freshness
        bound). IdentityError if the source says the seal is spent: a revoked identity is
        not stapled as fresh. A batch-anchored PAT has no seal to ask about."""
        if self.locator.kind == LocatorKind.P2WPKH:
            spender = source.outspend_unverified(self.locator.txid, SEAL_VOUT)
            if spender is not None:
                raise IdentityError(f"identity {self.certificate.name} is revoked: its seal is spent by "
                                    f"{to_display_hex(spender)} (the source's word)")
        tip = source.tip()
        proof = dataclasses.replace(self.proof, fresh=(tip.height, tip.block_hash))
        return dataclasses.replace(self, proof=proof, proof_bytes=proof.encode())

    @property
    def nonce_point(self) -> bytes:
        """R = k·G, compressed: exactly the point a verifier computes from the signature."""
        return self.nonce_key.public_key.format()

    @classmethod
    def from_party(cls, party: Party | BatchPat, source: ChainSource) -> "LocalIdentity":
        """Fetch the anchor's proof from ``source`` (once) and pair it with k."""
        if isinstance(party, BatchPat):
            return cls.from_batch_pat(party, source)
        proof = _fetch_proof(party.name, party.locator, source)
        return cls.create(party.certificate, party.locator, proof, party.nonce_key())

    @classmethod
    def from_batch_pat(cls, pat: BatchPat, source: ChainSource) -> "LocalIdentity":
        """The staple of a batch slot (the whole batch transaction as the block holds it) and
        k = s − e·d′ from the PAT's signature in that block's witness."""
        locator = pat.locator
        proof = _fetch_proof(pat.name, locator, source)
        tx = parse_tx(proof.tx)
        view = read_batch_input(tx, locator.input_index)
        signature = view.signatures[locator.batch_slot.position]
        sighash = script_path_sighash(tx, locator.input_index, proof.spent_outputs, view.leaf)
        try:
            nonce_key = pat.key.batch_nonce_key(signature, sighash)
        except InvalidNonceInput as exc:
            raise IdentityError(f"batch slot of {pat.name} holds no signature of its key: {exc}") from None
        return cls.create(pat.certificate, locator, proof, nonce_key)

    @classmethod
    def load(cls, home: Path, name: str, source: ChainSource) -> "LocalIdentity":
        """A single-anchored party or a batch-anchored PAT, whichever ``name`` is in ``home``."""
        if BatchPat.exists(home, name):
            return cls.from_batch_pat(BatchPat.load(home, name), source)
        return cls.from_party(Party.load(home, name), source)


def _fetch_proof(name: str, locator: Locator | None, source: ChainSource) -> AnchorProof:
    if locator is None:
        raise IdentityError(f"identity {name} is not confirmed yet (run `milagro identity confirm`)")
    status = source.tx_status(locator.txid)
    if status.block_hash != locator.block_hash or status.height is None:
        raise IdentityError(
            f"anchor {to_display_hex(locator.txid)} is no longer in the block its locator names "
            "(a reorg?): run `milagro identity confirm` to record where it is now")
    return fetch_anchor_proof(source, locator.txid, locator.block_hash, status.height)

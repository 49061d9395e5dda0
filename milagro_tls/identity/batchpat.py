"""A batch-anchored PAT as its owner holds it: sign a slot without trusting the batcher, then
find out from the confirmed block whether the slot anchored it.

Home directory layout (the same identities/ tree as identity.party):

    HOME/identities/NAME/identity.key     the PAT's key, mode 0600
    HOME/identities/NAME/certificate.json canonical certificate, naming the TBS's batch_key
    HOME/identities/NAME/batch.json       slots signed (txid, input, position, inclusion proof)
                                          and the locator once one confirmed with its signature
                                          (signatures are read back from the chain; k is never stored)
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chain.batchverify import batch_root, read_batch_input
from ..chain.errors import AnchorNotFound, MalformedAnchor, TxNotFound
from ..chain.hashes import from_display_hex, to_display_hex
from ..chain.network import Network
from ..chain.proof import fetch_anchor_proof
from ..chain.source import ChainSource
from ..chain.taproot import LeafTemplateError, batch_output, parse_leaf, script_path_sighash, verify_schnorr
from ..chain.tx import parse_tx, txid_of
from ..errors import IdentityError, MalformedInput
from ..merkle import InclusionProof, MerkleProofError, verify_inclusion
from .batch import SigningRequest, SigningResponse
from .certificate import BirthCertificate
from .files import write_atomically
from .keys import IdentityKey
from .locator import Locator
from .party import AnchorNotMined, _identity_dir

BATCH_STATE = "batch.json"


class BatchRequestRefused(IdentityError):
    """The PAT will not sign this request (the reason says which check failed)."""


class SlotNotAnchored(IdentityError):
    """Every batch this PAT signed for confirmed with its slot empty (it was stripped or not
    used): the TBS re-queues it, and the PAT signs again in the next batch."""


@dataclass(frozen=True, slots=True)
class SignedSlot:
    txid: bytes                   # wire order
    input_index: int
    position: int
    proof: InclusionProof

    def to_json(self) -> dict[str, Any]:
        return {"txid": to_display_hex(self.txid), "input": self.input_index, "position": self.position,
                "proof": self.proof.to_json()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "SignedSlot":
        return cls(from_display_hex(doc["txid"]), doc["input"], doc["position"], InclusionProof.from_json(doc["proof"]))


@dataclass
class BatchPat:
    name: str
    directory: Path
    key: IdentityKey = field(repr=False)
    certificate: BirthCertificate
    slots: list[SignedSlot]
    locator: Locator | None = None

    # --- creation and persistence -------------------------------------------------------
    @classmethod
    def create(cls, home: Path, *, name: str, batch_key: bytes, network: Network, role: str = "pat",
               urls: tuple[str, ...] = (), role_data: dict | None = None) -> "BatchPat":
        """A new key and certificate naming ``batch_key`` (the TBS's x-only batching key);
        nothing is on chain until a batch with its slot confirms."""
        directory = _identity_dir(home, name)
        if directory.exists() and not (directory / BATCH_STATE).exists():
            shutil.rmtree(directory)        # an earlier create stopped before its state existed
        if directory.exists():
            raise IdentityError(f"identity {name!r} already exists in {home}")
        directory.mkdir(parents=True, mode=0o700)
        key = IdentityKey.generate()
        key.save(directory / "identity.key")
        certificate = BirthCertificate(role=role, name=name, pubkey=key.public_key, network=network.label,
                                       urls=tuple(urls), role_data=role_data, batch_key=batch_key)
        (directory / "certificate.json").write_bytes(certificate.canonical_bytes())
        pat = cls(name, directory, key, certificate, [])
        pat._save()
        return pat

    @classmethod
    def load(cls, home: Path, name: str) -> "BatchPat":
        directory = _identity_dir(home, name)
        if not (directory / BATCH_STATE).exists():
            raise IdentityError(f"no batch-anchored identity {name!r} in {home}")
        state = json.loads((directory / BATCH_STATE).read_text())
        certificate = BirthCertificate.parse((directory / "certificate.json").read_bytes())
        return cls(name, directory, IdentityKey.load(directory / "identity.key"), certificate,
                   [SignedSlot.from_json(s) for s in state["slots"]],
                   Locator.from_json(state["locator"]) if state.get("locator") else None)

    @staticmethod
    def exists(home: Path, name: str) -> bool:
        return (_identity_dir(home, name) / BATCH_STATE).exists()

    def _save(self) -> None:
        state = {"slots": [slot.to_json() for slot in self.slots],
                 "locator": self.locator.to_json() if self.locator else None}
        write_atomically(self.directory / BATCH_STATE, json.dumps(state, indent=2) + "\n")

    # --- signing --------------------------------------------------------------------------
    def sign(self, request: SigningRequest) -> SigningResponse:
        """Check the request against this PAT's own certificate, compute the sighash, sign.

        Refuses (BatchRequestRefused) unless: the transaction parses and carries no witness;
        every input has its spent output; the leaf is the batch template with the certificate's
        batch key first and this PAT's key at ``position``; the spent output is the P2TR of that
        key and leaf; the one MILAGRO marker is a batch root containing this certificate's digest.
        The slot is recorded before the signature is returned."""
        cert = self.certificate
        if cert.batch_key is None:
            raise BatchRequestRefused("this certificate names no batch key")
        try:
            tx = parse_tx(request.tx)
        except MalformedInput as exc:
            raise BatchRequestRefused(f"batch transaction: {exc}") from None
        j = request.input_index
        if any(tx_in.witness.items for tx_in in tx.vin):
            raise BatchRequestRefused("the unsigned batch already carries witness data")
        if not 0 <= j < len(tx.vin) or len(request.spent_outputs) != len(tx.vin):
            raise BatchRequestRefused("input index or spent outputs do not match the transaction")
        try:
            tbs_key, pat_keys = parse_leaf(request.leaf)
        except LeafTemplateError as exc:
            raise BatchRequestRefused(f"leaf: {exc}") from None
        if tbs_key != cert.batch_key:
            raise BatchRequestRefused("the leaf's TBS key is not the batch key this certificate names")
        if not 0 <= request.position < len(pat_keys) or pat_keys[request.position] != cert.pubkey[1:]:
            raise BatchRequestRefused("this PAT's key is not at the requested position of the leaf")
        try:
            script_pubkey, _ = batch_output(tbs_key, request.leaf)
        except LeafTemplateError as exc:
            raise BatchRequestRefused(str(exc)) from None
        if request.spent_outputs[j].script_pubkey != script_pubkey:
            raise BatchRequestRefused("the spent output is not the batch key's P2TR output with this leaf")
        try:
            root = batch_root(tx)
            verify_inclusion(cert.digest(), request.proof, root)
        except (MalformedAnchor, MerkleProofError) as exc:
            raise BatchRequestRefused(f"certificate digest is not in the batch root: {exc}") from None
        sighash = script_path_sighash(tx, j, request.spent_outputs, request.leaf)
        txid = txid_of(tx)
        slot = SignedSlot(txid, j, request.position, request.proof)
        if slot not in self.slots:
            self.slots.append(slot)
            self._save()
        signature = self.key._sign_own_batch_slot(sighash)
        return SigningResponse(txid=txid, input_index=j, position=request.position, signature=signature)

    # --- after the batch is mined --------------------------------------------------------
    def confirm(self, source: ChainSource) -> Locator:
        """The locator of the first signed slot whose batch confirmed with this PAT's signature
        in the block's witness (the source's block, checked against its hash; peers verify the
        staple against their own headers). AnchorNotMined while none is confirmed;
        SlotNotAnchored when all confirmed ones hold an empty slot."""
        empty = 0
        for slot in self.slots:
            try:
                status = source.tx_status(slot.txid)
            except TxNotFound:
                continue
            if status.block_hash is None:
                continue
            # The proof (assembled from the source's block, or served by a thin client's tbs://
            # source) carries the batch with its witness and the outputs it spends.
            try:
                proof = fetch_anchor_proof(source, slot.txid, status.block_hash, status.height)
            except AnchorNotFound:
                raise IdentityError("the source's block does not hold the batch it says it does") from None
            tx = parse_tx(proof.tx)
            view = read_batch_input(tx, slot.input_index)
            sighash = script_path_sighash(tx, slot.input_index, list(proof.spent_outputs), view.leaf)
            if not verify_schnorr(self.certificate.pubkey[1:], view.signatures[slot.position], sighash):
                empty += 1
                continue
            self.locator = Locator.taproot_batch(network=source.network, txid=slot.txid,
                                                 input_index=slot.input_index, block_hash=status.block_hash,
                                                 position=slot.position, proof=slot.proof)
            self._save()
            return self.locator
        if empty:
            raise SlotNotAnchored(f"{empty} batch(es) confirmed with this PAT's slot empty: sign in the next one")
        raise AnchorNotMined(f"no batch {self.name} signed for is confirmed yet")

    def trust_entry(self, roles: list[str] | None = None) -> dict[str, Any]:
        if self.locator is None:
            raise IdentityError(f"identity {self.name} is not anchored yet")
        return {"name": self.certificate.name, "locator": self.locator.to_json(),
                "roles": roles or [self.certificate.role]}


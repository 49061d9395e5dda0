"""The verifier of locator kind 2 (taproot-batch): one PAT's slot in a confirmed batch.

What a batch-anchored party staples is the same pair as for a single anchor (the handshake's
``Staple``): its canonical certificate and a ``chain.proof.AnchorProof`` (version 1, unchanged)
whose ``tx`` is the **whole batch transaction with its witness** as the block holds it, and whose
``spent`` lists one output per input of that transaction (the script-path sighash commits to all of
them). The locator (identity.locator) names txid, input j, block hash and carries the body
``u16 position ‖ InclusionProof``. About 100 bytes of staple per PAT in the batch: 13.1 KB for a
batch of 128 on regtest, under the 16 KiB staple bound (``DEFAULT_MAX_STAPLE_SIZE``) with the
block's Merkle branches of a full mainnet block and the certificate.

Checks, in order (batch-anchoring.md §7, "what a verifier must check"):

1. SPV with the witness (``verify.verify_tx_in_block``): the header is the locator's block on our
   best chain, deep enough; the txid and wtxid branches lead to the header and to the coinbase's
   BIP141 witness commitment. Only the witness of the *confirmed* block counts: anyone relaying
   the transaction can empty a PAT's signature without changing the txid.
2. Input j spends nothing through scriptSig; its witness has N + 3 items: the last is a 33-byte
   control block (0xc0 | parity, no annex), the one before it the leaf.
3. The leaf is the template byte for byte (chain.taproot), its TBS key is the certificate's
   ``batch_key``, its PAT key at ``position`` is the certificate's key (x-only).
4. The control block's internal key is that TBS key, and leaf + control block open the spent
   output's key (tapleaf hash, TapTweak, parity).
5. Witness item N-1-position is non-empty, exactly 64 bytes, and verifies (BIP340) under the PAT's
   key over the script-path sighash with all spent outputs. Empty: this batch did not anchor it.
6. Exactly one MILAGRO marker, of type 0x02, and the certificate digest's inclusion proof leads
   to its root (milagro_tls.merkle).

The PAT's key-agreement point is then R = lift_x(sig[0:32]), even y, no ambiguity.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ciphersuites.nonce import InvalidNonceInput, schnorr_nonce_point
from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ..identity.locator import Locator, LocatorKind
from ..identity.marker import MarkerType, find_markers
from ..merkle import MerkleProofError, verify_inclusion
from .errors import BadSignature, DigestMismatch, MalformedAnchor, WrongKey
from .proof import AnchorProof, SpentOutput
from .taproot import (CONTROL_BLOCK_SIZE, SCHNORR_SIGNATURE_SIZE, LeafTemplateError, check_control_block,
                      parse_leaf, script_path_sighash, verify_schnorr)
from .verify import DEFAULT_MIN_CONFIRMATIONS, ConfirmedTx, VerifiedHeaders, verify_tx_in_block


class BatchSlotEmpty(BadSignature):
    """The PAT's slot in the confirmed batch holds no signature: this batch did not anchor it
    (it did not answer, or its signature was stripped on the way to the block)."""


@dataclass(frozen=True, slots=True)
class SlotView:
    """One input of a batch transaction, read without judging whom it anchors."""
    tbs_key: bytes
    pat_keys: tuple[bytes, ...]
    leaf: bytes
    control_block: bytes
    signatures: tuple[bytes, ...]     # by position (not witness order); b"" where empty
    tbs_signature: bytes


@dataclass(frozen=True, slots=True)
class BatchSlot:
    """A PAT's verified slot."""
    confirmed: ConfirmedTx
    position: int
    pat_count: int
    signature: bytes
    sighash: bytes
    root: bytes
    nonce_point: bytes                # R = lift_x(sig[0:32]), compressed


def read_batch_input(tx, input_index: int) -> SlotView:
    """Steps 2 and 3's parsing: the leaf, its keys and the signatures by position.

    :raises MalformedAnchor: the input is not a spend of the batch form.
    """
    if not 0 <= input_index < len(tx.vin):
        raise MalformedAnchor("locator names an input the transaction does not have")
    tx_in = tx.vin[input_index]
    items = [bytes(item) for item in tx_in.witness.items]
    if tx_in.script_sig.data or len(items) < 4:
        raise MalformedAnchor("batch input is not a taproot script-path spend")
    control, leaf = items[-1], items[-2]
    if len(control) != CONTROL_BLOCK_SIZE:
        # An annex (0x50...) would sit here: the batch form never has one.
        raise MalformedAnchor("last witness item is not a 33-byte control block")
    try:
        tbs_key, pat_keys = parse_leaf(leaf)
    except LeafTemplateError as exc:
        raise MalformedAnchor(f"batch leaf: {exc}") from None
    n = len(pat_keys)
    if len(items) != n + 3:
        raise MalformedAnchor(f"batch witness has {len(items)} items, the leaf needs {n + 3}")
    # PAT signatures sit in reverse key order: PAT i is item N-1-i, below the TBS signature.
    signatures = tuple(items[n - 1 - position] for position in range(n))
    return SlotView(tbs_key, pat_keys, leaf, control, signatures, items[n])


def batch_root(tx) -> bytes:
    """The root of the transaction's one MILAGRO marker, which must be of type 0x02."""
    try:
        markers = find_markers([out.script_pubkey.data for out in tx.vout])
    except MalformedInput as exc:
        raise MalformedAnchor(str(exc)) from None
    if len(markers) != 1:
        raise MalformedAnchor(f"batch carries {len(markers)} MILAGRO markers, expected one")
    marker = markers[0][1]
    if marker.type != MarkerType.BATCH_ROOT:
        raise MalformedAnchor(f"marker type {marker.type.name} is not a batch root")
    return marker.digest


def check_batch_slot(locator: Locator, certificate: BirthCertificate, confirmed: ConfirmedTx,
                     spent_outputs: tuple[SpentOutput, ...]) -> BatchSlot:
    """Steps 2 to 6 on a transaction already proven to sit, witness included, in its block."""
    if locator.kind != LocatorKind.TAPROOT_BATCH:
        raise MalformedAnchor(f"a {locator.kind.label} locator is not a batch slot")
    if certificate.batch_key is None:
        raise WrongKey("certificate names no batch key: it cannot be batch-anchored")
    slot_ref = locator.batch_slot
    tx, j = confirmed.tx, locator.input_index
    if len(spent_outputs) != len(tx.vin):
        raise MalformedAnchor("proof must carry one spent output per input")
    view = read_batch_input(tx, j)
    n = len(view.pat_keys)
    if view.tbs_key != certificate.batch_key:
        raise WrongKey("batch leaf's TBS key is not the batch key the certificate names")
    if slot_ref.position >= n:
        raise MalformedAnchor(f"position {slot_ref.position} is outside a leaf of {n} PAT keys")
    pat_key = certificate.pubkey[1:]
    if view.pat_keys[slot_ref.position] != pat_key:
        raise WrongKey("leaf key at the locator's position is not the certificate's key")
    try:
        internal = check_control_block(view.control_block, view.leaf, spent_outputs[j].script_pubkey)
    except LeafTemplateError as exc:
        raise WrongKey(str(exc)) from None
    if internal != view.tbs_key:
        raise WrongKey("taproot internal key is not the TBS key")

    signature = view.signatures[slot_ref.position]
    if not signature:
        raise BatchSlotEmpty(f"slot {slot_ref.position} of input {j} confirmed empty: "
                             "this batch did not anchor the certificate")
    if len(signature) != SCHNORR_SIGNATURE_SIZE:
        raise BadSignature(f"slot signature is {len(signature)} bytes, not a 64-byte SIGHASH_DEFAULT one")
    sighash = script_path_sighash(tx, j, spent_outputs, view.leaf)
    if not verify_schnorr(pat_key, signature, sighash):
        raise BadSignature("slot signature does not verify under the certificate's key")

    root = batch_root(tx)
    try:
        verify_inclusion(certificate.digest(), slot_ref.proof, root)
    except MerkleProofError as exc:
        raise DigestMismatch(f"certificate digest is not in the batch root: {exc}") from None
    try:
        nonce_point = schnorr_nonce_point(signature)
    except InvalidNonceInput as exc:
        raise BadSignature(str(exc)) from None
    return BatchSlot(confirmed=confirmed, position=slot_ref.position, pat_count=n, signature=signature,
                     sighash=sighash, root=root, nonce_point=nonce_point)


def verify_batch_slot(locator: Locator, certificate: BirthCertificate, proof: AnchorProof,
                      headers: VerifiedHeaders, *,
                      min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> BatchSlot:
    """All six steps: the PAT's slot or a VerificationError subclass naming the failure.
    ``verify.verify_anchor`` calls this for kind 2 and makes the PeerIdentity."""
    if certificate.network != locator.network.label or locator.network != headers.network:
        raise MalformedAnchor("certificate, locator and header chain name different networks")
    confirmed = verify_tx_in_block(locator.txid, locator.block_hash, proof, headers,
                                   min_confirmations=min_confirmations)
    return check_batch_slot(locator, certificate, confirmed, proof.spent_outputs)

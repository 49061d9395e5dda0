"""The anchor verifier: the only place a PeerIdentity is made.

``verify_anchor`` checks a proof bundle against the caller's own header chain and
does no network IO (the handshake calls it with a stapled proof). ``resolve_anchor``
is the convenience that syncs headers and fetches the proof from a source first.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Protocol

from ..ciphersuites.nonce import InvalidNonceInput, ecdsa_nonce_point, parse_der_signature
from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ..identity.locator import Locator, LocatorKind
from ..identity.marker import MarkerType, find_markers
from .block import commitment_for, witness_commitment, witness_reserved_value
from .errors import (AnchorNotFound, AnchorTooShallow, AnchorUnconfirmed, BadSignature,
                     DigestMismatch, MalformedAnchor, ProofMismatch, SourceBehind, StapleTooOld, UnknownBlock,
                     WrongKey)
from .hashes import to_display_hex
from .header import BlockHeader
from .merkle import root_from_branch
from .network import Network
from .proof import AnchorProof, fetch_anchor_proof
from .sighash import SIGHASH_ALL, p2wpkh_script, p2wpkh_sighash
from .source import ChainSource
from .tx import is_coinbase, parse_tx, txid_of, wtxid_of

log = logging.getLogger(__name__)

DEFAULT_MIN_CONFIRMATIONS = 6
#: Signet blocks are authorized by a signature in the coinbase (BIP325) that headers alone cannot
#: show; this package runs signet as a trusted-source network and says so on every verification.
SIGNET_WARNING = ("signet: the block signature (BIP325 challenge) is not checked; whoever serves "
                  "the headers is trusted to serve the real signet")


class VerifiedHeaders(Protocol):
    """What the verifier needs of a HeaderChain."""
    network: object

    def tip(self) -> tuple[int, bytes]: ...
    def height_of(self, block_hash: bytes) -> int | None: ...
    def header_by_hash(self, block_hash: bytes) -> BlockHeader | None: ...


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """A party whose anchor verified. Only this module constructs it."""
    certificate: BirthCertificate
    locator: Locator
    nonce_point: bytes          # exact R, 33-byte compressed
    height: int
    confirmations: int
    block_hash: bytes
    #: (txid wire order, vout): spending it revokes the identity. None for a batch-anchored
    #: PAT (kind 2), which has no output of its own.
    seal: tuple[bytes, int] | None
    warnings: tuple[str, ...] = ()
    #: The staple's freshness bound (height, block hash), when it had one (chain.proof).
    fresh: tuple[int, bytes] | None = None

    @property
    def name(self) -> str:
        return self.certificate.name


def verify_anchor(locator: Locator, certificate: BirthCertificate, proof: AnchorProof,
                  headers: VerifiedHeaders, *,
                  min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS,
                  max_staple_age: int | None = None) -> PeerIdentity:
    """Return the verified identity or raise a VerificationError subclass naming the failure.

    ``max_staple_age`` (blocks): refuse a proof without a freshness bound, or one whose block is
    not on our best chain or is more than that many blocks behind our tip (StapleTooOld).

    Kind 1 (p2wpkh) is checked here; kind 2 (taproot-batch) by chain.batchverify."""
    identity = _verify_anchor(locator, certificate, proof, headers, min_confirmations)
    # Unconfigured, the bound is only recorded: a stapler whose source is a block ahead of our
    # headers must not be turned away by a check nobody asked for.
    if max_staple_age is not None:
        check_staple_age(proof.fresh, headers, max_staple_age)
    return identity if proof.fresh is None else dataclasses.replace(identity, fresh=proof.fresh)


def check_staple_age(fresh: tuple[int, bytes] | None, headers: VerifiedHeaders, max_staple_age: int | None) -> int:
    """The staple's age in blocks (0: made at our tip). A bound naming a block we do not have
    is UnknownBlock (our headers may be behind: retry after a sync); none, one off our best chain
    or one too old is StapleTooOld. With ``max_staple_age`` None the age is not limited."""
    if fresh is None:
        raise StapleTooOld("staple carries no freshness bound, and this verifier requires one")
    height, block_hash = fresh
    if headers.height_of(block_hash) is None:
        if headers.header_by_hash(block_hash) is None:
            raise UnknownBlock(f"staple's freshness block {to_display_hex(block_hash)} is not in the local header chain")
        raise StapleTooOld(f"staple's freshness block {to_display_hex(block_hash)} is not on the best chain")
    if headers.height_of(block_hash) != height:
        raise StapleTooOld(f"staple's freshness bound claims height {height} for a block at another height")
    age = headers.tip()[0] - height
    if max_staple_age is not None and age > max_staple_age:
        raise StapleTooOld(f"staple was made {age} blocks ago (at height {height}); at most {max_staple_age} accepted")
    return age


def _verify_anchor(locator: Locator, certificate: BirthCertificate, proof: AnchorProof,
                   headers: VerifiedHeaders, min_confirmations: int) -> PeerIdentity:
    if locator.kind not in (LocatorKind.P2WPKH, LocatorKind.TAPROOT_BATCH):
        raise MalformedAnchor(f"locator kind {locator.kind.label} is not verifiable by this version")
    _check_networks(locator, certificate, headers)
    if locator.kind == LocatorKind.TAPROOT_BATCH:
        return _verify_batch_anchor(locator, certificate, proof, headers, min_confirmations)

    header, height, confirmations = _check_block(locator, proof, headers, min_confirmations)
    try:
        tx = parse_tx(proof.tx)
        coinbase = parse_tx(proof.coinbase)
    except MalformedInput as exc:
        raise MalformedAnchor(str(exc)) from None
    if txid_of(tx) != locator.txid:
        raise ProofMismatch("stapled transaction is not the one the locator names")
    _check_merkle(header, proof, tx, coinbase)
    _check_marker(tx, certificate)
    nonce_point = _check_signature(locator, tx, proof, certificate)
    seal_vout = next((i for i, out in enumerate(tx.vout)
                      if out.script_pubkey.data == p2wpkh_script(certificate.pubkey)), None)
    if seal_vout is None:
        raise MalformedAnchor("anchor has no seal output to the identity key")
    log.debug("anchor %s:%d verified at height %d (%d confirmations)",
              locator.txid_hex, locator.input_index, height, confirmations)
    return PeerIdentity(certificate=certificate, locator=locator, nonce_point=nonce_point,
                        height=height, confirmations=confirmations, block_hash=locator.block_hash,
                        seal=(locator.txid, seal_vout), warnings=_network_warnings(locator))


def _check_networks(locator: Locator, certificate: BirthCertificate, headers: VerifiedHeaders) -> None:
    if certificate.network != locator.network.label or locator.network != headers.network:
        raise MalformedAnchor("certificate, locator and header chain name different networks")


def _network_warnings(locator: Locator) -> tuple[str, ...]:
    if locator.network == Network.SIGNET:
        log.warning("%s (anchor %s)", SIGNET_WARNING, locator.txid_hex)
        return (SIGNET_WARNING,)
    return ()


def _verify_batch_anchor(locator: Locator, certificate: BirthCertificate, proof: AnchorProof,
                         headers: VerifiedHeaders, min_confirmations: int) -> PeerIdentity:
    # Imported here: batchverify builds on verify_tx_in_block below.
    from .batchverify import verify_batch_slot

    slot = verify_batch_slot(locator, certificate, proof, headers, min_confirmations=min_confirmations)
    log.debug("batch slot %s:%d/%d verified at height %d (%d confirmations)", locator.txid_hex,
              locator.input_index, slot.position, slot.confirmed.height, slot.confirmed.confirmations)
    # No seal: a batch-anchored PAT is revoked through its TBS's revocation list, not by a spend.
    return PeerIdentity(certificate=certificate, locator=locator, nonce_point=slot.nonce_point,
                        height=slot.confirmed.height, confirmations=slot.confirmed.confirmations,
                        block_hash=locator.block_hash, seal=None, warnings=_network_warnings(locator))


@dataclass(frozen=True, slots=True)
class ConfirmedTx:
    """A transaction proven to sit, witness included, in a block of the caller's best chain."""
    tx: object                  # embit Transaction
    raw: bytes
    txid: bytes                 # wire order
    block_hash: bytes
    height: int
    confirmations: int


def verify_tx_in_block(txid: bytes, block_hash: bytes, proof: AnchorProof, headers: VerifiedHeaders, *,
                       min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> ConfirmedTx:
    """The SPV half of ``verify_anchor`` for any transaction (root-chain links, batches): the
    proof's header is ``block_hash`` on our best chain, deep enough, and its txid and wtxid
    branches lead to that header and to the block's witness commitment. Says nothing about
    what the transaction means: callers check that."""
    locator_like = _BlockRef(block_hash)
    header, height, confirmations = _check_block(locator_like, proof, headers, min_confirmations)
    try:
        tx = parse_tx(proof.tx)
        coinbase = parse_tx(proof.coinbase)
    except MalformedInput as exc:
        raise MalformedAnchor(str(exc)) from None
    if txid_of(tx) != txid:
        raise ProofMismatch("proof carries a transaction other than the one asked for")
    _check_merkle(header, proof, tx, coinbase)
    return ConfirmedTx(tx=tx, raw=proof.tx, txid=txid, block_hash=block_hash, height=height,
                       confirmations=confirmations)


@dataclass(frozen=True, slots=True)
class _BlockRef:
    block_hash: bytes


def recheck_verified(identity: PeerIdentity, headers: VerifiedHeaders, *,
                     min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS,
                     max_staple_age: int | None = None) -> PeerIdentity:
    """An identity verified earlier from the same staple, against today's header chain.

    The staple's bytes cannot change, so only the chain can have: the block must still be on
    the best chain at the same height (a reorg that moved the anchor raises AnchorUnconfirmed)
    and deep enough. Two header lookups instead of the whole SPV check."""
    height = _active_height(headers, identity.block_hash, UnknownBlock, "the local header chain")
    if height != identity.height:
        raise AnchorUnconfirmed("the anchor's block moved to another height")
    confirmations = headers.tip()[0] - height + 1
    if confirmations < min_confirmations:
        raise AnchorTooShallow(confirmations, min_confirmations)
    if max_staple_age is not None:
        check_staple_age(identity.fresh, headers, max_staple_age)     # it ages as the tip moves
    if confirmations == identity.confirmations:
        return identity
    return dataclasses.replace(identity, confirmations=confirmations)


def _active_height(headers: VerifiedHeaders, block_hash: bytes, unknown: type[Exception], where: str) -> int:
    """The block's height on the best chain; ``unknown`` if no header has this hash,
    AnchorUnconfirmed if it is on a branch a reorg left."""
    height = headers.height_of(block_hash)
    if height is None:
        if headers.header_by_hash(block_hash) is None:
            raise unknown(f"block {to_display_hex(block_hash)} is not in {where}")
        raise AnchorUnconfirmed(f"block {to_display_hex(block_hash)} is no longer on the best chain")
    return height


def _check_block(locator: Locator, proof: AnchorProof, headers: VerifiedHeaders,
                 min_confirmations: int) -> tuple[BlockHeader, int, int]:
    try:
        header = BlockHeader.parse(proof.header)
    except ValueError as exc:
        raise MalformedAnchor(str(exc)) from None
    if header.hash != locator.block_hash:
        raise ProofMismatch("stapled header is not the block the locator names")
    height = _active_height(headers, header.hash, UnknownBlock, "the local header chain")
    if height != proof.height:
        raise ProofMismatch(f"proof claims height {proof.height}, the header chain says {height}")
    confirmations = headers.tip()[0] - height + 1
    if confirmations < min_confirmations:
        raise AnchorTooShallow(confirmations, min_confirmations)
    return header, height, confirmations


def _check_merkle(header: BlockHeader, proof: AnchorProof, tx, coinbase) -> None:
    depth = len(proof.txid_branch)
    # One depth for all branches: a 64-byte transaction could otherwise pose as an inner node.
    if not (len(proof.coinbase_branch) == len(proof.wtxid_branch) == depth):
        raise ProofMismatch("Merkle branches differ in depth")
    if proof.tx_index == 0 or proof.tx_index >> depth:
        raise ProofMismatch("transaction position does not fit the tree")
    if root_from_branch(txid_of(tx), proof.tx_index, list(proof.txid_branch)) != header.merkle_root:
        raise ProofMismatch("txid branch does not lead to the header's Merkle root")
    if not is_coinbase(coinbase):
        raise ProofMismatch("stapled coinbase is not a coinbase")
    if root_from_branch(txid_of(coinbase), 0, list(proof.coinbase_branch)) != header.merkle_root:
        raise ProofMismatch("coinbase branch does not lead to the header's Merkle root")
    # The txid commits to no witness: the anchor's signature is proven only through the
    # coinbase's BIP141 commitment to the witness tree.
    commitment = witness_commitment(coinbase)
    reserved = witness_reserved_value(coinbase)
    if commitment is None or reserved is None:
        raise ProofMismatch("block has no witness commitment")
    witness_root = root_from_branch(wtxid_of(proof.tx), proof.tx_index, list(proof.wtxid_branch))
    if commitment_for(witness_root, reserved) != commitment:
        raise ProofMismatch("witness does not match the block's witness commitment")


def _check_marker(tx, certificate: BirthCertificate) -> None:
    markers = find_markers([out.script_pubkey.data for out in tx.vout])
    if len(markers) != 1:
        raise MalformedAnchor(f"anchor carries {len(markers)} MILAGRO markers, expected one")
    marker = markers[0][1]
    if marker.type != MarkerType.BIRTH_CERTIFICATE:
        raise MalformedAnchor(f"marker type {marker.type.name} is not a birth certificate")
    if marker.digest != certificate.digest():
        raise DigestMismatch("OP_RETURN digest is not the certificate's SHA256")


def _check_signature(locator: Locator, tx, proof: AnchorProof, certificate: BirthCertificate) -> bytes:
    index = locator.input_index
    if index >= len(tx.vin):
        raise MalformedAnchor("locator names an input the transaction does not have")
    if len(proof.spent_outputs) != len(tx.vin):
        raise MalformedAnchor("proof must carry one spent output per input")
    tx_in = tx.vin[index]
    items = [bytes(item) for item in tx_in.witness.items]
    if tx_in.script_sig.data or len(items) != 2 or len(items[1]) != 33:
        raise MalformedAnchor("anchor input is not a native P2WPKH spend")
    signature, pubkey = items
    if pubkey != certificate.pubkey:
        raise WrongKey("anchor was signed by a key other than the certificate's")
    spent = proof.spent_outputs[index]
    if spent.script_pubkey != p2wpkh_script(pubkey):
        raise WrongKey("spent output is not locked to the certificate's key")
    # SIGHASH_ALL only: any weaker type would let a third party graft the owner's
    # signature onto outputs (a marker) the owner never signed.
    if not signature or signature[-1] != SIGHASH_ALL:
        raise BadSignature("anchor signature is not SIGHASH_ALL")
    try:
        r, s = parse_der_signature(signature[:-1])
        sighash = p2wpkh_sighash(tx, index, pubkey, spent.value)
        return ecdsa_nonce_point(r, s, sighash, pubkey)
    except InvalidNonceInput as exc:
        raise BadSignature(f"anchor signature does not verify: {exc}") from None


#: How often resolve_anchor syncs when the source's tip keeps moving ahead of its headers.
_SYNC_ATTEMPTS = 3


def resolve_anchor(locator: Locator, certificate: BirthCertificate, source: ChainSource, headers, *,
                   min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> tuple[PeerIdentity, AnchorProof]:
    """Sync headers from ``source``, fetch the proof, and verify it against those headers.

    The proof is checked against ``headers`` only; the source is used only while its tip is
    our best tip (a source that is behind, or on a branch with less work, may hide blocks).
    """
    for attempt in range(_SYNC_ATTEMPTS):
        headers.sync_from(source)
        try:
            require_current_source(source, headers)
            break
        except SourceBehind:
            # A block found while we synced puts the source's tip ahead of ours: sync again.
            # A source behind us, or on a weaker branch, stays refused.
            if attempt + 1 == _SYNC_ATTEMPTS or headers.header_by_hash(source.tip().block_hash) is not None:
                raise
    height = _active_height(headers, locator.block_hash, AnchorNotFound, "the source's chain")
    proof = fetch_anchor_proof(source, locator.txid, locator.block_hash, height)
    return verify_anchor(locator, certificate, proof, headers, min_confirmations=min_confirmations), proof


def require_current_source(source: ChainSource, headers) -> None:
    """Raise SourceBehind unless the source's tip is our header chain's best tip."""
    tip = source.tip()
    our_height, our_hash = headers.tip()
    if tip.block_hash == our_hash:
        return
    if headers.height_of(tip.block_hash) is not None:
        raise SourceBehind(f"source tip {to_display_hex(tip.block_hash)} (height {tip.height}) is behind "
                           f"our best header chain (height {our_height}); not used for proofs")
    raise SourceBehind(f"source tip {to_display_hex(tip.block_hash)} is not on our best header chain "
                       f"(its branch has less work, or it moved while we synced); not used for proofs")

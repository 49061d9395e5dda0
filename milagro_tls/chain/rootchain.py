"""The verifier's side of anchor chains: is this root one the party anchored, and its latest?

A party whose birth certificate names ``root_chains`` anchors each root of one type in a
transaction that spends the previous link's chain output (identity.rootchain):

    birth anchor            outputs [marker 0x01, seal, chain output 0, chain output 1, ..., change]
    root tx of type T       input 0 spends the previous chain output, signed (P2WPKH,
                            SIGHASH_ALL) by the chain key the certificate names;
                            outputs [0: marker T ‖ root, 1: chain output, ...]

``follow_root_chain`` walks that chain from the birth anchor. What it proves and what it takes
on trust:

* **Proven against the caller's headers**: every confirmed link sits in a block of the best
  header chain, witness included (``chain.verify.verify_tx_in_block``), spends the previous
  link's chain output as its input 0 with a valid SIGHASH_ALL signature by the certificate's
  chain key, carries exactly one MILAGRO marker (output 0, of the chain's type) and makes the
  next chain output (output 1). Only the chain key's holder can make such a link, so a root
  anchored by anyone else, in any transaction, is never in the chain.
* **The source's word**: which transaction spends a chain output, and that the last one is
  **unspent** (``source.outspend_unverified``). Headers cannot prove that an output is
  unspent, so "current" means "the latest link the source admits to". A lying source can
  hide newer links (make an older root look current) but never make a root the party did not
  anchor appear in the chain. An unconfirmed link is checked the same way except for SPV and
  shows as ``pending_txid``: it is not in ``links`` and ``find`` does not return it.

Each confirmed link's proof comes from the source when it assembles proofs
(``ChainSource.anchor_proof``: a thin client's tbs:// source, which never serves blocks), else
from the block; it is checked against the caller's headers either way.

The walk is bounded (``max_links`` per call); pass the previous view as ``previous`` to go on
from its last link (logs anchored every minute grow long).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import coincurve

from ..errors import MalformedInput
from ..identity.anchor import FIRST_CHAIN_VOUT, ROOT_CHAIN_VOUT
from ..identity.certificate import ROOT_CHAIN_TYPES
from ..identity.marker import MarkerType, find_markers
from .block import Block
from .errors import NoRootChain, RootChainError, RootNotInChain, TxNotFound, VerificationError
from .hashes import to_display_hex
from .proof import _check_served_proof as check_served_proof, build_anchor_proof
from .sighash import SIGHASH_ALL, p2wpkh_script, p2wpkh_sighash
from .source import ChainSource
from .tx import outpoint, parse_tx, txid_of
from .verify import PeerIdentity, VerifiedHeaders, require_current_source, verify_tx_in_block

log = logging.getLogger(__name__)

#: Links verified per call unless the caller says otherwise: each confirmed link costs a block
#: download, so one call stays bounded; ``previous=`` continues where the last one stopped.
DEFAULT_MAX_LINKS = 500


@dataclass(frozen=True, slots=True)
class RootLink:
    """A verified, confirmed link: ``root`` was anchored by the party's chain key."""
    number: int                  # 1 for the chain's first root
    root: bytes
    txid: bytes                  # wire order
    block_hash: bytes            # wire order
    height: int

    @property
    def txid_hex(self) -> str:
        return to_display_hex(self.txid)


@dataclass(frozen=True, slots=True)
class _ChainOutput:
    txid: bytes
    vout: int
    value: int


@dataclass(frozen=True, slots=True)
class RootChainView:
    """What ``follow_root_chain`` verified of one chain of one party."""
    root_type: MarkerType
    chain_key: bytes
    certificate_digest: bytes
    birth_txid: bytes
    links: tuple[RootLink, ...]          # confirmed and verified, oldest first
    #: The first unconfirmed (or not yet deep enough) link, checked except for SPV.
    pending_txid: bytes | None
    pending_root: bytes | None
    #: False when the walk stopped at ``max_links``: the newest links are not known yet.
    complete: bool
    _end: _ChainOutput = field(repr=False)   # chain output of the last link in ``links``

    @property
    def current(self) -> RootLink | None:
        """The latest confirmed link (None before the first root is confirmed). That no later
        link exists is the source's word (see the module docstring)."""
        if not self.complete:
            raise RootChainError(f"the walk stopped after {len(self.links)} links before the chain's end: "
                                 "call follow_root_chain again with previous=this view")
        return self.links[-1] if self.links else None

    def find(self, root: bytes) -> RootLink:
        """The confirmed link carrying ``root``; RootNotInChain if none does."""
        for link in reversed(self.links):
            if link.root == root:
                return link
        if self.pending_root == root:
            raise RootNotInChain(f"root {root.hex()} is in link {to_display_hex(self.pending_txid)}, "
                                 "which is not confirmed yet")
        more = "" if self.complete else " (the walk has not reached the chain's end)"
        raise RootNotInChain(f"root {root.hex()} is not in the party's {self.root_type.name} chain{more}")

    def is_current(self, root: bytes) -> bool:
        """Whether ``root`` is the latest confirmed root (the source's word, see ``current``)."""
        current = self.current
        return current is not None and current.root == root


def follow_root_chain(identity: PeerIdentity, birth_tx: bytes, root_type: int, source: ChainSource,
                      headers: VerifiedHeaders, *, min_confirmations: int = 1,
                      max_links: int = DEFAULT_MAX_LINKS, previous: RootChainView | None = None,
                      sync_headers: bool = True) -> RootChainView:
    """Walk and verify ``identity``'s chain of ``root_type`` roots.

    ``birth_tx`` is the verified birth anchor (``proof.tx`` from ``resolve_anchor``).
    ``min_confirmations`` applies to each link; a shallower one is reported as pending.
    ``headers`` are synced from ``source`` first (``sync_headers``), and the source is used only
    while its tip is their best tip. ``previous``: a view of the same chain from an earlier call,
    continued from its last confirmed link (from the birth anchor again if a reorg moved it).
    Raises NoRootChain, RootChainError (a link that does not verify) or another
    VerificationError / SourceError.
    """
    if max_links < 1:
        raise ValueError("max_links must be at least 1")
    kind = _root_type(root_type)
    certificate = identity.certificate
    found = certificate.root_chain(kind)
    if found is None:
        raise NoRootChain(f"{certificate.name}'s birth certificate names no {kind.name} chain")
    position, entry = found
    if sync_headers:
        headers.sync_from(source)
    require_current_source(source, headers)

    links, end = _start(identity, birth_tx, kind, entry.key, position, headers, previous)
    walker = _Walker(source, headers, kind, entry.key, min_confirmations)
    pending_txid = pending_root = None
    complete = False
    for _ in range(max_links):
        spender = source.outspend_unverified(end.txid, end.vout)   # the source's word
        if spender is None:
            complete = True
            break
        link = walker.link(spender, end, len(links) + 1)
        if isinstance(link, _Pending):
            pending_txid, pending_root, complete = link.txid, link.root, True
            break
        links.append(link.link)
        end = link.next_output
    return RootChainView(root_type=kind, chain_key=entry.key, certificate_digest=certificate.digest(),
                         birth_txid=identity.locator.txid, links=tuple(links), pending_txid=pending_txid,
                         pending_root=pending_root, complete=complete, _end=end)


def _root_type(root_type: int) -> MarkerType:
    if type(root_type) not in (int, MarkerType) or root_type not in ROOT_CHAIN_TYPES:
        raise ValueError(f"{root_type!r} is not a root chain type (2, 3 or 4)")
    return MarkerType(root_type)


def _start(identity: PeerIdentity, birth_tx: bytes, kind: MarkerType, key: bytes, position: int,
           headers: VerifiedHeaders, previous: RootChainView | None) -> tuple[list[RootLink], _ChainOutput]:
    """The links already verified and the chain output to continue from."""
    if previous is not None:
        if (previous.certificate_digest, previous.birth_txid, previous.root_type, previous.chain_key) != (
                identity.certificate.digest(), identity.locator.txid, kind, key):
            raise ValueError("previous is a view of another party's or another type's chain")
        last = previous.links[-1] if previous.links else None
        if last is None or headers.height_of(last.block_hash) == last.height:
            return list(previous.links), previous._end
        # A reorg moved the last link: its position, and maybe its ancestors', must be proven again.
        log.info("root chain link %s left the best chain; walking again from the birth anchor", last.txid_hex)
    try:
        tx = parse_tx(birth_tx)
    except MalformedInput as exc:
        raise RootChainError(f"birth anchor does not parse: {exc}") from None
    if txid_of(tx) != identity.locator.txid:
        raise RootChainError("birth_tx is not the identity's anchor transaction")
    vout = FIRST_CHAIN_VOUT + position
    if vout >= len(tx.vout) or tx.vout[vout].script_pubkey.data != p2wpkh_script(key):
        raise RootChainError(f"birth anchor has no chain output to the chain key at output {vout}")
    return [], _ChainOutput(identity.locator.txid, vout, tx.vout[vout].value)


@dataclass(frozen=True, slots=True)
class _Confirmed:
    link: RootLink
    next_output: _ChainOutput


@dataclass(frozen=True, slots=True)
class _Pending:
    txid: bytes
    root: bytes


class _Walker:
    """Verifies one link at a time; keeps the last block parsed (links often share blocks)."""

    def __init__(self, source: ChainSource, headers: VerifiedHeaders, kind: MarkerType, key: bytes,
                 min_confirmations: int) -> None:
        self.source, self.headers, self.kind, self.key = source, headers, kind, key
        self.min_confirmations = min_confirmations
        self._block: Block | None = None

    def link(self, txid: bytes, spent: _ChainOutput, number: int) -> _Confirmed | _Pending:
        try:
            status = self.source.tx_status(txid)
        except TxNotFound:
            raise RootChainError(f"the source names {to_display_hex(txid)} as the spender of chain output "
                                 f"{to_display_hex(spent.txid)}:{spent.vout} but does not know it") from None
        height = None if status.block_hash is None else self.headers.height_of(status.block_hash)
        deep = height is not None and self.headers.tip()[0] - height + 1 >= self.min_confirmations
        if not deep:
            if status.block_hash is not None and height is None:
                raise RootChainError(f"link {to_display_hex(txid)} is in block {to_display_hex(status.block_hash)}, "
                                     "which is not on our best header chain")
            tx = _parse(self.source.transaction(txid), txid)
            root = _check_link(tx, spent, self.kind, self.key)
            return _Pending(txid, root)
        proof = self._proof(txid, status.block_hash, height)
        confirmed = verify_tx_in_block(txid, status.block_hash, proof, self.headers,
                                       min_confirmations=self.min_confirmations)
        root = _check_link(confirmed.tx, spent, self.kind, self.key)
        return _Confirmed(RootLink(number, root, txid, confirmed.block_hash, confirmed.height),
                          _ChainOutput(txid, ROOT_CHAIN_VOUT, confirmed.tx.vout[ROOT_CHAIN_VOUT].value))

    def _proof(self, txid: bytes, block_hash: bytes, height: int):
        """The link's proof: assembled by the source when it serves proofs (a thin client's
        tbs:// source never serves blocks), else built here from the block. Untrusted either
        way: verify_tx_in_block checks it against our headers."""
        served = self.source.anchor_proof(txid, block_hash, height)     # AnchorNotFound as from a block
        if served is not None:
            return check_served_proof(served, txid, block_hash, height)
        return build_anchor_proof(self._fetch_block(block_hash), height, txid, [])

    def _fetch_block(self, block_hash: bytes) -> Block:
        if self._block is None or self._block.hash != block_hash:
            # Untrusted bytes: verify_tx_in_block proves the transaction against the header.
            try:
                self._block = Block.parse(self.source.block(block_hash))
            except MalformedInput as exc:
                raise RootChainError(f"block {to_display_hex(block_hash)} does not parse: {exc}") from None
        return self._block


def _parse(raw: bytes, txid: bytes):
    try:
        tx = parse_tx(raw)
    except MalformedInput as exc:
        raise RootChainError(f"link {to_display_hex(txid)} does not parse: {exc}") from None
    if txid_of(tx) != txid:
        raise RootChainError(f"the source returned another transaction for {to_display_hex(txid)}")
    return tx


def _check_link(tx, spent: _ChainOutput, kind: MarkerType, key: bytes) -> bytes:
    """The link's root, once its input 0, signature, marker and chain output check out."""
    txid = to_display_hex(txid_of(tx))
    if not tx.vin or outpoint(tx.vin[0]) != (spent.txid, spent.vout):
        raise RootChainError(f"link {txid}: input 0 does not spend the previous chain output "
                             f"{to_display_hex(spent.txid)}:{spent.vout}")
    _check_chain_signature(tx, spent.value, key, txid)
    try:
        markers = find_markers([out.script_pubkey.data for out in tx.vout])
    except VerificationError as exc:
        raise RootChainError(f"link {txid}: {exc}") from None
    if len(markers) != 1 or markers[0][0] != 0:
        raise RootChainError(f"link {txid} must carry exactly one MILAGRO marker, at output 0")
    marker = markers[0][1]
    if marker.type != kind:
        raise RootChainError(f"link {txid} carries a {marker.type.name} marker in the {kind.name} chain")
    if len(tx.vout) <= ROOT_CHAIN_VOUT or tx.vout[ROOT_CHAIN_VOUT].script_pubkey.data != p2wpkh_script(key):
        raise RootChainError(f"link {txid} has no chain output to the chain key at output {ROOT_CHAIN_VOUT}")
    return marker.digest


def _check_chain_signature(tx, value: int, key: bytes, txid: str) -> None:
    tx_in = tx.vin[0]
    items = [bytes(item) for item in tx_in.witness.items]
    if tx_in.script_sig.data or len(items) != 2:
        raise RootChainError(f"link {txid}: input 0 is not a native P2WPKH spend")
    signature, pubkey = items
    if pubkey != key:
        raise RootChainError(f"link {txid}: input 0 is not signed by the certificate's chain key")
    # SIGHASH_ALL only: a weaker type would let anyone graft the chain key's signature onto
    # outputs (another root) it never signed.
    if not signature or signature[-1] != SIGHASH_ALL:
        raise RootChainError(f"link {txid}: the chain key's signature is not SIGHASH_ALL")
    sighash = p2wpkh_sighash(tx, 0, key, value)
    try:
        valid = coincurve.PublicKey(key).verify(signature[:-1], sighash, hasher=None)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise RootChainError(f"link {txid}: the chain key's signature does not verify")

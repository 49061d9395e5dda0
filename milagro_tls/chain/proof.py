"""The anchor proof bundle: everything a verifier needs besides its own header chain.

It is what the handshake staples (with the canonical certificate). Binary form,
integers big-endian:

    version        u8   = 1
    height         u32
    header         80
    tx_index       u32  position of the anchor transaction in its block
    depth          u8   depth of the block's Merkle tree; ONE depth for all three
                        branches, so a 64-byte transaction cannot pose as an inner node
    txid_branch    depth × 32
    coinbase_branch depth × 32   (the coinbase is at position 0)
    wtxid_branch   depth × 32    (BIP141 witness tree, coinbase wtxid = 0)
    tx             u24 length ‖ raw transaction with witness
    coinbase       u24 length ‖ raw coinbase with its witness (the reserved value)
    spent          u16 count ‖ count × (u64 value ‖ u16 length ‖ scriptPubKey)
                   one per input of tx: the sighash needs them; a wrong one makes
                   the signature check fail, so they need no proof of their own
    fresh          version 2 only: u32 height ‖ 32 block hash: the freshness bound

The **freshness bound** (version 2) names the best block the stapler's source showed when it
(re)made the staple, after that source said its seal was unspent (identity.local). A verifier
configured with ``max_staple_age`` (chain.verify) refuses a staple without one, or whose block is
not on its best header chain at that height, or is more than that many blocks behind its tip. The
block hash stops a stapler from claiming a block that does not exist yet; nothing can prove that
the seal was unspent at that block: that part is the stapler's (and its source's) word. What it
bounds is how long a staple goes on being accepted after its maker stopped following the chain.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import MalformedInput
from .block import Block
from .hashes import sha256d
from .header import HEADER_SIZE
from .merkle import merkle_branch
from .reader import ByteReader
from .source import ChainSource
from .tx import parse_tx, txid_of
from .errors import AnchorNotFound

VERSION = 1
#: Version 2 adds the freshness bound; version 1 is still written when there is none.
VERSION_FRESH = 2
#: A block of 4 MWU holds at most ~24,000 transactions: depth 15. 24 leaves room and bounds parsing.
MAX_DEPTH = 24
#: Default bound of a serialized proof; the handshake staples it (16 KiB budget with the certificate).
MAX_PROOF_SIZE = 16 * 1024 - 2048


@dataclass(frozen=True, slots=True)
class SpentOutput:
    value: int
    script_pubkey: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AnchorProof:
    height: int
    header: bytes
    tx_index: int
    txid_branch: tuple[bytes, ...]
    coinbase_branch: tuple[bytes, ...]
    wtxid_branch: tuple[bytes, ...]
    tx: bytes
    coinbase: bytes
    spent_outputs: tuple[SpentOutput, ...]
    #: (height, block hash wire order) of the stapler's best block when it made this staple.
    fresh: tuple[int, bytes] | None = None

    def encode(self) -> bytes:
        depth = len(self.txid_branch)
        if not (len(self.coinbase_branch) == len(self.wtxid_branch) == depth <= MAX_DEPTH):
            raise ValueError("branches must share one depth")
        if self.fresh is not None and not (0 <= self.fresh[0] < 2**32 and len(self.fresh[1]) == 32):
            raise ValueError("freshness bound is (u32 height, 32-byte block hash)")
        version = VERSION if self.fresh is None else VERSION_FRESH
        parts = [struct.pack(">BI", version, self.height), self.header,
                 struct.pack(">IB", self.tx_index, depth),
                 *self.txid_branch, *self.coinbase_branch, *self.wtxid_branch,
                 len(self.tx).to_bytes(3, "big"), self.tx,
                 len(self.coinbase).to_bytes(3, "big"), self.coinbase,
                 struct.pack(">H", len(self.spent_outputs))]
        for out in self.spent_outputs:
            parts.append(struct.pack(">QH", out.value, len(out.script_pubkey)) + out.script_pubkey)
        if self.fresh is not None:
            parts.append(struct.pack(">I", self.fresh[0]) + self.fresh[1])
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes, max_size: int = MAX_PROOF_SIZE) -> "AnchorProof":
        if len(raw) > max_size:
            raise MalformedInput(f"anchor proof of {len(raw)} bytes exceeds {max_size}")
        reader = ByteReader(raw, "anchor proof")
        version = reader.uint(1)
        if version not in (VERSION, VERSION_FRESH):
            raise MalformedInput("unsupported anchor proof version")
        height = reader.uint(4)
        header = reader.take(HEADER_SIZE)
        tx_index = reader.uint(4)
        depth = reader.uint(1)
        if depth > MAX_DEPTH:
            raise MalformedInput("Merkle depth out of range")
        branches = [tuple(reader.take(32) for _ in range(depth)) for _ in range(3)]
        tx = reader.take(reader.uint(3))
        coinbase = reader.take(reader.uint(3))
        spent = []
        for _ in range(reader.uint(2)):
            value = reader.uint(8)
            spent.append(SpentOutput(value, reader.take(reader.uint(2))))
        fresh = (reader.uint(4), reader.take(32)) if version == VERSION_FRESH else None
        reader.finish()
        return cls(height=height, header=header, tx_index=tx_index, txid_branch=branches[0],
                   coinbase_branch=branches[1], wtxid_branch=branches[2], tx=tx, coinbase=coinbase,
                   spent_outputs=tuple(spent), fresh=fresh)


def build_anchor_proof(block: Block, height: int, txid: bytes, spent_outputs: list[SpentOutput]) -> AnchorProof:
    """Assemble the proof for ``txid`` from its whole block (what a source serves)."""
    txids = block.txids()
    try:
        index = txids.index(txid)
    except ValueError:
        raise AnchorNotFound("transaction is not in the block the locator names") from None
    return AnchorProof(
        height=height, header=block.header.serialize(), tx_index=index,
        txid_branch=tuple(merkle_branch(txids, index)),
        coinbase_branch=tuple(merkle_branch(txids, 0)),
        wtxid_branch=tuple(merkle_branch(block.wtxids(), index)),
        tx=block.raw_txs[index], coinbase=block.raw_txs[0],
        spent_outputs=tuple(spent_outputs))


def fetch_anchor_proof(source: ChainSource, txid: bytes, block_hash: bytes, height: int) -> AnchorProof:
    """Fetch the block and the spent outputs from a source and assemble the proof.

    Nothing fetched here is trusted: the verifier checks all of it against headers. A source
    that assembles proofs itself (``ChainSource.anchor_proof``, the tbs:// source) is asked for
    the proof instead, and its answer must at least name the block, height and txid asked for.
    """
    served = getattr(source, "anchor_proof", None)
    proof = served(txid, block_hash, height) if served is not None else None
    if proof is not None:
        return _check_served_proof(proof, txid, block_hash, height)
    block = Block.parse(source.block(block_hash))
    if block.hash != block_hash:
        raise AnchorNotFound("source returned a different block than asked for")
    txids = block.txids()
    if txid not in txids:
        raise AnchorNotFound("transaction is not in the block the locator names")
    tx = block.txs[txids.index(txid)]
    spent = []
    for tx_in in tx.vin:
        prev_txid = tx_in.txid[::-1]  # embit holds display order
        prev = parse_tx(source.transaction(prev_txid))
        if txid_of(prev) != prev_txid or tx_in.vout >= len(prev.vout):
            raise AnchorNotFound("source returned a wrong previous transaction")
        out = prev.vout[tx_in.vout]
        spent.append(SpentOutput(out.value, out.script_pubkey.data))
    return build_anchor_proof(block, height, txid, spent)


def _check_served_proof(proof: AnchorProof, txid: bytes, block_hash: bytes, height: int) -> AnchorProof:
    """The cheap checks of a proof a source assembled (the verifier does the rest): a wrong
    answer is refused here, as a wrong block is above, with AnchorNotFound."""
    if sha256d(proof.header) != block_hash or proof.height != height:
        raise AnchorNotFound("source returned a proof for another block than asked for")
    try:
        if txid_of(parse_tx(proof.tx)) != txid:
            raise AnchorNotFound("source returned a proof for another transaction than asked for")
    except MalformedInput:
        raise AnchorNotFound("source returned a proof whose transaction does not parse") from None
    return proof

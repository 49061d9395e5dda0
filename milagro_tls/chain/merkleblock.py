"""Bitcoin's merkleblock (BIP37; what ``gettxoutproof`` returns): a header and a partial Merkle tree.

The traversal and every check are those of Core's merkleblock.cpp
(``CPartialMerkleTree::ExtractMatches`` and ``TraverseAndExtract``). A proof that
parses here only shows that the transactions sit in the block this header names;
whether that header is on the best chain is the HeaderChain's question.
The builder below makes the same bytes for the chain server.
"""
from __future__ import annotations

import struct

from embit import compact

from .errors import ProofMismatch
from .hashes import sha256d, to_display_hex
from .header import HEADER_SIZE, BlockHeader
from .reader import ByteReader

#: Core: MAX_BLOCK_WEIGHT / MIN_TRANSACTION_WEIGHT (4,000,000 / (4 * 60)); no block holds more.
MAX_TRANSACTIONS = 4_000_000 // 240


def parse_merkleblock(raw: bytes) -> tuple[BlockHeader, int, list[tuple[bytes, int]]]:
    """Return (header, total transactions in the block, [(txid, index in block)]) of a proof.

    Txids are in wire order. Raises MalformedInput for bytes that do not parse and
    ProofMismatch for a tree Core would reject or whose root is not the header's.
    """
    reader = ByteReader(raw, "merkleblock")
    header = BlockHeader.parse(reader.take(HEADER_SIZE))
    total = int.from_bytes(reader.take(4), "little")
    hashes = [reader.take(32) for _ in range(reader.compact_size(limit=len(raw) // 32))]
    flag_bytes = reader.take(reader.compact_size(limit=len(raw)))
    reader.finish()
    root, matches = _extract_matches(total, hashes, flag_bytes)
    if root != header.merkle_root:
        raise ProofMismatch(f"partial Merkle tree gives root {to_display_hex(root)}, "
                            f"header {header.hash_hex} commits to {to_display_hex(header.merkle_root)}")
    return header, total, matches


def _extract_matches(total: int, hashes: list[bytes], flag_bytes: bytes) -> tuple[bytes, list[tuple[bytes, int]]]:
    """Core's CPartialMerkleTree::ExtractMatches: the root and the matched leaves."""
    if total == 0:
        raise ProofMismatch("a block has at least one transaction")
    if total > MAX_TRANSACTIONS:
        raise ProofMismatch(f"{total} transactions cannot fit in a block")
    if len(hashes) > total:
        raise ProofMismatch("more hashes than transactions")
    # vBits is the flag bytes expanded to 8 bits each, least significant first (BytesToBits).
    bits = [(byte >> i) & 1 for byte in flag_bytes for i in range(8)]
    if len(bits) < len(hashes):
        raise ProofMismatch("fewer flag bits than hashes")
    height = 0
    while _tree_width(total, height) > 1:
        height += 1
    traversal = _Traversal(total, hashes, bits)
    root = traversal.extract(height, 0)
    # Every bit must be used, except the padding up to a whole byte; every hash exactly.
    if (traversal.bits_used + 7) // 8 != len(flag_bytes):
        raise ProofMismatch("unused flag bytes in the partial Merkle tree")
    if traversal.hashes_used != len(hashes):
        raise ProofMismatch("unused hashes in the partial Merkle tree")
    return root, traversal.matches


def _tree_width(total: int, height: int) -> int:
    """Core's CalcTreeWidth: nodes at ``height`` (0 = leaves)."""
    return (total + (1 << height) - 1) >> height


class _Traversal:
    """Core's TraverseAndExtract, depth first, consuming one flag bit per node visited."""

    def __init__(self, total: int, hashes: list[bytes], bits: list[int]) -> None:
        self.total, self.hashes, self.bits = total, hashes, bits
        self.bits_used = self.hashes_used = 0
        self.matches: list[tuple[bytes, int]] = []

    def extract(self, height: int, pos: int) -> bytes:
        if self.bits_used >= len(self.bits):
            raise ProofMismatch("partial Merkle tree runs out of flag bits")
        parent_of_match = self.bits[self.bits_used]
        self.bits_used += 1
        if height == 0 or not parent_of_match:
            # A leaf, or a subtree with no match: its hash is given.
            if self.hashes_used >= len(self.hashes):
                raise ProofMismatch("partial Merkle tree runs out of hashes")
            node = self.hashes[self.hashes_used]
            self.hashes_used += 1
            if height == 0 and parent_of_match:
                self.matches.append((node, pos))
            return node
        left = self.extract(height - 1, pos * 2)
        if pos * 2 + 1 < _tree_width(self.total, height - 1):
            right = self.extract(height - 1, pos * 2 + 1)
            # CVE-2012-2459: identical children where the right one exists would let the
            # same root stand for a block with duplicated transactions.
            if right == left:
                raise ProofMismatch("identical sibling subtrees (CVE-2012-2459)")
        else:
            right = left      # the last node of an odd level pairs with itself
        return sha256d(left + right)


# --- building (Core's CPartialMerkleTree constructor, the bytes gettxoutproof returns) ---

def _node_hash(txids: list[bytes], height: int, pos: int) -> bytes:
    """Core's CalcHash; the right child is the left one again where a level has an odd count."""
    if height == 0:
        return txids[pos]
    left = _node_hash(txids, height - 1, pos * 2)
    right = _node_hash(txids, height - 1, pos * 2 + 1) if pos * 2 + 1 < _tree_width(len(txids), height - 1) else left
    return sha256d(left + right)


def partial_merkle_tree(txids: list[bytes], matches: list[bool]) -> tuple[list[bool], list[bytes]]:
    """(flag bits, hashes) of Core's CPartialMerkleTree for wire-order ``txids``."""
    if not txids or len(txids) != len(matches):
        raise ValueError("need one match flag per txid, and at least one txid")
    n = len(txids)
    height = 0
    while _tree_width(n, height) > 1:
        height += 1
    bits: list[bool] = []
    hashes: list[bytes] = []

    def walk(h: int, pos: int) -> None:
        parent_of_match = any(matches[pos << h:min((pos + 1) << h, n)])
        bits.append(parent_of_match)
        if h == 0 or not parent_of_match:
            hashes.append(_node_hash(txids, h, pos))
            return
        walk(h - 1, pos * 2)
        if pos * 2 + 1 < _tree_width(n, h - 1):
            walk(h - 1, pos * 2 + 1)

    walk(height, 0)
    return bits, hashes


def build_merkleblock(header: bytes, txids: list[bytes], wanted: set[bytes]) -> bytes:
    """Serialized CMerkleBlock: header, uint32 tx count, hashes, flag bytes (bits LSB first)."""
    if len(header) != 80:
        raise ValueError("a block header is 80 bytes")
    bits, hashes = partial_merkle_tree(txids, [t in wanted for t in txids])
    flags = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        flags[i // 8] |= bit << (i % 8)
    return (header + struct.pack("<I", len(txids)) + compact.to_bytes(len(hashes)) + b"".join(hashes)
            + compact.to_bytes(len(flags)) + bytes(flags))

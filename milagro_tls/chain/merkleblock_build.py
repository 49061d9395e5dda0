"""Building merkleblocks (BIP37's CMerkleBlock), the bytes ``gettxoutproof`` returns.

Mirrors Core's CPartialMerkleTree constructor: a depth-first walk that emits one
flag bit per visited node (1 = an ancestor of a match, descend) and a hash for
every node it does not descend into (and for matched leaves). The parser lives in
``merkleblock.py``; the tests round-trip this builder through it.
"""
from __future__ import annotations

import struct

from embit import compact

from .hashes import sha256d


def _width(n_tx: int, height: int) -> int:
    """Nodes at ``height`` (0 = leaves): Core's CalcTreeWidth."""
    return (n_tx + (1 << height) - 1) >> height


def _node_hash(txids: list[bytes], height: int, pos: int) -> bytes:
    """Core's CalcHash; the right child is the left one again where a level has an odd count."""
    if height == 0:
        return txids[pos]
    left = _node_hash(txids, height - 1, pos * 2)
    right = _node_hash(txids, height - 1, pos * 2 + 1) if pos * 2 + 1 < _width(len(txids), height - 1) else left
    return sha256d(left + right)


def partial_merkle_tree(txids: list[bytes], matches: list[bool]) -> tuple[list[bool], list[bytes]]:
    """(flag bits, hashes) of Core's CPartialMerkleTree for wire-order ``txids``."""
    if not txids or len(txids) != len(matches):
        raise ValueError("need one match flag per txid, and at least one txid")
    n = len(txids)
    height = 0
    while _width(n, height) > 1:
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
        if pos * 2 + 1 < _width(n, h - 1):
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

"""Bitcoin's transaction Merkle tree (txids and wtxids), branches and their checks.

This is the consensus tree of BIP-less Bitcoin: double SHA256 of the concatenated
children, the last node duplicated on odd levels. The project's own tagged Merkle
tree for logs and lists is a different thing and lives elsewhere.
"""
from __future__ import annotations

from .hashes import sha256d


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_branch(leaves: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from the leaf at ``index`` up to (not including) the root."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    branch: list[bytes] = []
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        branch.append(level[index ^ 1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        index //= 2
    return branch


def root_from_branch(leaf: bytes, index: int, branch: list[bytes]) -> bytes:
    """Fold a branch into the root it implies. ``index`` must fit the branch depth."""
    if index >> len(branch):
        raise ValueError("leaf index does not fit the branch depth")
    node = leaf
    for sibling in branch:
        node = sha256d(sibling + node) if index & 1 else sha256d(node + sibling)
        index >>= 1
    return node

"""The project's tagged Merkle tree for logs and lists: roots, inclusion and non-membership proofs.

One tree serves every log and list the roles publish (activity logs, batch roots, revocation
lists). It is **not** Bitcoin's consensus tree of txids (``milagro_tls.chain.merkle``), which
hashes bare concatenations with double SHA256 and duplicates the last node of an odd level. That
shape has two known weaknesses that a log must not inherit:

* A leaf and an inner node are hashed alike, so 64 bytes of leaf data can pose as a node (and a
  node as a leaf): a second preimage of the root with a different tree. Here leaves and nodes use
  different BIP340 tagged hashes (``milagro/merkle/leaf`` and ``milagro/merkle/node``) and the
  empty tree its own tag, so no hash can stand for another kind.
* Duplicating the last node lets ``[a, b, c]`` and ``[a, b, c, c]`` share a root (CVE-2012-2459).
  Here the shape is RFC 9162 section 2.1: a tree of ``n`` leaves splits at the largest power of
  two below ``n``, and nothing is ever duplicated, so the size is part of what a root commits to.

Leaves are length-prefixed (u32 big-endian) before hashing, so a leaf is one unambiguous byte
string even if a caller later hashes several fields into it.

Proofs are plain values. Verifiers return the root or ``None`` and raise ``MerkleProofError`` with
the precise reason on any failure; parsers refuse anything that is not exactly one proof.

What a bare root authenticates. RFC 9162 pairs every root with its tree size (the signed tree
head); our anchors carry the 32-byte root alone. A verified inclusion proof proves that the data
is a leaf of that tree, but not the ``size`` it states, and not always its ``index``: some
(index, size) pairs hash their path in exactly the same order (leaf 6 of 7 and leaf 5 of 6, or
leaf 3 of any size 5..8). What the order of a path does fix is the leaf's position on the edges
and next to its neighbours: a proof for index 0 is the real first leaf, one for index size-1 the
real last leaf, and proofs for i and i+1 of one claimed size are real neighbours (tests check this
exhaustively for small trees). Non-membership relies only on these. Where a size or index matters
to a caller, compare it with a source that states it (the log's own record).
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import MilagroError

__all__ = [
    "EMPTY_ROOT", "MAX_PATH", "MAX_SIZE", "InclusionProof", "MerkleProofError", "MerkleTree",
    "Neighbour", "NonMembershipProof", "inclusion_proof", "leaf_hash", "merkle_root", "node_hash",
    "non_membership_proof", "root_from_inclusion", "verify_inclusion", "verify_non_membership",
]

LEAF_TAG = "milagro/merkle/leaf"
NODE_TAG = "milagro/merkle/node"
EMPTY_TAG = "milagro/merkle/empty"

#: Sizes and indices travel as u32; a path in a tree of at most 2**32 - 1 leaves has at most 32
#: hashes. The parser's bound of 64 is what the u8 count may claim before anything is checked.
MAX_SIZE = 2**32 - 1
MAX_PATH = 64
HASH_LEN = 32


class MerkleProofError(MilagroError, ValueError):
    """A Merkle proof does not parse, does not fit its tree, or does not lead to the root."""


def _tag_context(tag: str):
    # BIP340 tagged hash SHA256(SHA256(tag) || SHA256(tag) || data), as chain.hashes.tagged_hash
    # computes it. The 64-byte prefix is one SHA256 block, so its midstate is kept and copied:
    # hashlib does all the hashing, and 100k leaves hash in well under a second.
    tag_digest = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_digest + tag_digest)


_LEAF_CTX = _tag_context(LEAF_TAG)
_NODE_CTX = _tag_context(NODE_TAG)

#: The root of the tree with no leaves.
EMPTY_ROOT = _tag_context(EMPTY_TAG).digest()


def leaf_hash(data: bytes) -> bytes:
    """``tagged_hash("milagro/merkle/leaf", u32be(len(data)) || data)``."""
    if len(data) > MAX_SIZE:
        raise ValueError(f"a Merkle leaf holds at most {MAX_SIZE} bytes, got {len(data)}")
    h = _LEAF_CTX.copy()
    h.update(len(data).to_bytes(4, "big"))
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``tagged_hash("milagro/merkle/node", left || right)`` of two 32-byte child hashes."""
    h = _NODE_CTX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    # Bottom-up: pair neighbours; a lone last node is carried up unchanged, never duplicated.
    # This builds exactly RFC 9162's tree (split at the largest power of two below n): the
    # left subtree is always complete, so only the right edge has lone nodes to carry.
    levels = [hashes]
    level = hashes
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def _path_length(index: int, size: int) -> int:
    """How many hashes the inclusion path of leaf ``index`` in a tree of ``size`` leaves has."""
    count = 0
    while size > 1:
        if index ^ 1 < size:
            count += 1
        index >>= 1
        size = (size + 1) >> 1
    return count


# --- inclusion proofs ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InclusionProof:
    """The audit path of leaf ``index`` in a tree of ``size`` leaves, lowest sibling first.

    The constructor refuses any proof whose shape cannot fit its tree, so a parsed proof has
    ``0 <= index < size <= MAX_SIZE`` and exactly the path length that (index, size) implies.
    """
    index: int
    size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        for name in ("index", "size"):
            value = getattr(self, name)
            if type(value) is not int:
                raise MerkleProofError(f"inclusion proof {name} must be an integer, got {type(value).__name__}")
        if not 0 < self.size <= MAX_SIZE:
            raise MerkleProofError(f"inclusion proof size {self.size} out of range 1..{MAX_SIZE}")
        if not 0 <= self.index < self.size:
            raise MerkleProofError(f"inclusion proof index {self.index} out of range for size {self.size}")
        if not isinstance(self.path, tuple):
            raise MerkleProofError("inclusion proof path must be a tuple of hashes")
        if len(self.path) > MAX_PATH:
            raise MerkleProofError(f"inclusion proof path has {len(self.path)} hashes, more than {MAX_PATH}")
        for i, h in enumerate(self.path):
            if not isinstance(h, bytes) or len(h) != HASH_LEN:
                raise MerkleProofError(f"inclusion proof path[{i}] is not a {HASH_LEN}-byte hash")
        expected = _path_length(self.index, self.size)
        if len(self.path) != expected:
            raise MerkleProofError(
                f"inclusion proof path has {len(self.path)} hashes; leaf {self.index} of {self.size} needs {expected}")

    # JSON: {"index": int, "size": int, "path": [hex, ...]} with exactly these keys.
    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "size": self.size, "path": [h.hex() for h in self.path]}

    @classmethod
    def from_json(cls, doc: Any) -> InclusionProof:
        doc = _exact_object(doc, ("index", "size", "path"), "inclusion proof")
        path = doc["path"]
        if not isinstance(path, list):
            raise MerkleProofError("inclusion proof path must be a JSON list")
        if len(path) > MAX_PATH:
            raise MerkleProofError(f"inclusion proof path has {len(path)} hashes, more than {MAX_PATH}")
        return cls(doc["index"], doc["size"],
                   tuple(_hex_bytes(h, f"inclusion proof path[{i}]", HASH_LEN) for i, h in enumerate(path)))

    # Binary: u32be index || u32be size || u8 count || count * 32 bytes, nothing after.
    def encode(self) -> bytes:
        return (self.index.to_bytes(4, "big") + self.size.to_bytes(4, "big")
                + len(self.path).to_bytes(1, "big") + b"".join(self.path))

    @classmethod
    def decode(cls, data: bytes) -> InclusionProof:
        data = bytes(data)
        if len(data) < 9:
            raise MerkleProofError(f"inclusion proof is {len(data)} bytes, shorter than its 9-byte header")
        index = int.from_bytes(data[0:4], "big")
        size = int.from_bytes(data[4:8], "big")
        count = data[8]
        if count > MAX_PATH:
            raise MerkleProofError(f"inclusion proof path has {count} hashes, more than {MAX_PATH}")
        if len(data) != 9 + HASH_LEN * count:
            raise MerkleProofError(
                f"inclusion proof is {len(data)} bytes; a path of {count} hashes needs {9 + HASH_LEN * count}")
        return cls(index, size, tuple(data[9 + HASH_LEN * i: 9 + HASH_LEN * (i + 1)] for i in range(count)))


def root_from_inclusion(data: bytes, proof: InclusionProof) -> bytes:
    """The root that ``proof`` implies for leaf ``data`` (RFC 9162 section 2.1.3.2)."""
    return _root_from_leaf_hash(leaf_hash(data), proof)


def _root_from_leaf_hash(h: bytes, proof: InclusionProof) -> bytes:
    if not isinstance(proof, InclusionProof):
        raise MerkleProofError(f"expected an InclusionProof, got {type(proof).__name__}")
    fn, sn = proof.index, proof.size - 1
    for sibling in proof.path:
        if sn == 0:  # unreachable for a constructed proof: its path length was checked
            raise MerkleProofError("inclusion proof path is longer than its tree is deep")
        if fn & 1 or fn == sn:
            h = node_hash(sibling, h)
            # A right-edge node with no sibling on some levels: climb past those levels.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            h = node_hash(h, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("inclusion proof path is shorter than its tree is deep")
    return h


def verify_inclusion(data: bytes, proof: InclusionProof, root: bytes) -> None:
    """Check that ``data`` is leaf ``proof.index`` of the tree of ``proof.size`` leaves with ``root``.

    Against a bare root this proves membership, not the stated size (see the module docstring).

    :raises MerkleProofError: the proof leads to another root (or is not a proof at all).
    """
    _check_root(root)
    if root_from_inclusion(data, proof) != root:
        raise MerkleProofError(f"inclusion proof for leaf {proof.index} of {proof.size} does not lead to the root")


# --- the tree -----------------------------------------------------------------------------------

class MerkleTree:
    """A tree built once, answering its root and any number of proofs without rehashing.

    Holds every level's hashes (about 2n hashes of 32 bytes) and, when built from data, the leaves
    themselves (for non-membership proofs, whose neighbours are leaf data).
    """

    __slots__ = ("_levels", "_leaves", "_sorted_checked")

    def __init__(self, leaves: Sequence[bytes]):
        leaves = tuple(leaves)
        if len(leaves) > MAX_SIZE:
            raise ValueError(f"a Merkle tree holds at most {MAX_SIZE} leaves")
        self._leaves: tuple[bytes, ...] | None = leaves
        self._levels = _levels([leaf_hash(d) for d in leaves])
        self._sorted_checked = False

    @classmethod
    def from_leaf_hashes(cls, hashes: Sequence[bytes]) -> MerkleTree:
        """A tree over leaves already hashed with ``leaf_hash`` (no non-membership proofs)."""
        hashes = list(hashes)
        if len(hashes) > MAX_SIZE:
            raise ValueError(f"a Merkle tree holds at most {MAX_SIZE} leaves")
        for i, h in enumerate(hashes):
            if not isinstance(h, bytes) or len(h) != HASH_LEN:
                raise ValueError(f"leaf hash {i} is not a {HASH_LEN}-byte hash")
        tree = cls.__new__(cls)
        tree._leaves = None
        tree._levels = _levels(hashes)
        tree._sorted_checked = False
        return tree

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def __len__(self) -> int:
        return self.size

    @property
    def root(self) -> bytes:
        return self._levels[-1][0] if self.size else EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        self._check_index(index)
        return self._levels[0][index]

    def inclusion_proof(self, index: int) -> InclusionProof:
        self._check_index(index)
        size = self.size
        path = []
        i = index
        for level in self._levels[:-1]:
            if i ^ 1 < len(level):
                path.append(level[i ^ 1])
            i >>= 1
        return InclusionProof(index, size, tuple(path))

    def non_membership_proof(self, item: bytes) -> NonMembershipProof:
        """Prove ``item`` is absent from this tree's strictly ascending leaves.

        :raises ValueError: the leaves are not strictly ascending, the tree was built from
            hashes only, or ``item`` is one of the leaves.
        """
        leaves = self._leaves
        if leaves is None:
            raise ValueError("a tree built from leaf hashes has no leaf data for non-membership proofs")
        if not self._sorted_checked:
            for i in range(1, len(leaves)):
                if not leaves[i - 1] < leaves[i]:
                    raise ValueError(f"leaves are not strictly ascending at index {i}")
            self._sorted_checked = True
        pos = bisect.bisect_left(leaves, item)
        if pos < len(leaves) and leaves[pos] == item:
            raise ValueError(f"item is leaf {pos} of the list: it is a member")
        left = Neighbour(leaves[pos - 1], self.inclusion_proof(pos - 1)) if pos > 0 else None
        right = Neighbour(leaves[pos], self.inclusion_proof(pos)) if pos < len(leaves) else None
        return NonMembershipProof(len(leaves), left, right)

    def _check_index(self, index: int) -> None:
        if type(index) is not int or not 0 <= index < self.size:
            raise IndexError(f"leaf index {index!r} out of range for a tree of {self.size} leaves")


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` (raw data, hashed here); ``EMPTY_ROOT`` for none."""
    return MerkleTree(leaves).root


def inclusion_proof(leaves: Sequence[bytes], index: int) -> InclusionProof:
    """The proof for one leaf; for many leaves of one tree build a ``MerkleTree`` once."""
    return MerkleTree(leaves).inclusion_proof(index)


# --- non-membership over sorted lists -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Neighbour:
    """A leaf next to the absent item, with its inclusion proof."""
    leaf: bytes
    proof: InclusionProof

    def __post_init__(self) -> None:
        if not isinstance(self.leaf, bytes):
            raise MerkleProofError("neighbour leaf must be bytes")
        if not isinstance(self.proof, InclusionProof):
            raise MerkleProofError("neighbour proof must be an InclusionProof")

    def to_json(self) -> dict[str, Any]:
        return {"leaf": self.leaf.hex(), "proof": self.proof.to_json()}

    @classmethod
    def from_json(cls, doc: Any) -> Neighbour:
        doc = _exact_object(doc, ("leaf", "proof"), "neighbour")
        return cls(_hex_bytes(doc["leaf"], "neighbour leaf"), InclusionProof.from_json(doc["proof"]))


@dataclass(frozen=True, slots=True)
class NonMembershipProof:
    """Evidence that an item is absent from a strictly ascending list of ``size`` leaves.

    The list is sorted by plain byte order. Four shapes: both neighbours (adjacent leaves around
    the item), only ``right`` (the first leaf, the item sorts before it), only ``left`` (the last
    leaf, the item sorts after it), or neither (the list is empty, ``size`` 0).
    """
    size: int
    left: Neighbour | None
    right: Neighbour | None

    def __post_init__(self) -> None:
        if type(self.size) is not int or not 0 <= self.size <= MAX_SIZE:
            raise MerkleProofError(f"non-membership proof size {self.size!r} out of range 0..{MAX_SIZE}")
        for side in (self.left, self.right):
            if side is not None and not isinstance(side, Neighbour):
                raise MerkleProofError("non-membership neighbours must be Neighbour or None")
            if side is not None and side.proof.size != self.size:
                raise MerkleProofError(
                    f"neighbour proof is for a tree of {side.proof.size} leaves, not {self.size}")
        if self.size == 0 and (self.left or self.right):
            raise MerkleProofError("non-membership proof for an empty list has neighbours")
        if self.size and not (self.left or self.right):
            raise MerkleProofError(f"non-membership proof for a list of {self.size} leaves has no neighbour")

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size,
                "left": self.left.to_json() if self.left else None,
                "right": self.right.to_json() if self.right else None}

    @classmethod
    def from_json(cls, doc: Any) -> NonMembershipProof:
        doc = _exact_object(doc, ("size", "left", "right"), "non-membership proof")
        return cls(doc["size"],
                   None if doc["left"] is None else Neighbour.from_json(doc["left"]),
                   None if doc["right"] is None else Neighbour.from_json(doc["right"]))


def non_membership_proof(sorted_leaves: Sequence[bytes], item: bytes) -> NonMembershipProof:
    """Prove ``item`` is absent from ``sorted_leaves`` (strictly ascending bytes).

    :raises ValueError: the leaves are not strictly ascending, or ``item`` is one of them.
    """
    return MerkleTree(sorted_leaves).non_membership_proof(item)


def verify_non_membership(item: bytes, proof: NonMembershipProof, root: bytes) -> None:
    """Check that ``item`` is not a leaf of the sorted list whose tree has ``root``.

    :raises MerkleProofError: with the reason (wrong root, neighbours not adjacent or not around
        the item, the item equal to a neighbour).
    """
    if not isinstance(proof, NonMembershipProof):
        raise MerkleProofError(f"expected a NonMembershipProof, got {type(proof).__name__}")
    _check_root(root)
    if not isinstance(item, bytes):
        raise MerkleProofError(f"non-membership item must be bytes, got {type(item).__name__}")
    left, right, size = proof.left, proof.right, proof.size
    if size == 0:
        if root != EMPTY_ROOT:
            raise MerkleProofError("non-membership proof claims an empty list but the root is not the empty root")
        return
    if left is not None and right is not None:
        if right.proof.index != left.proof.index + 1:
            raise MerkleProofError(
                f"neighbours are leaves {left.proof.index} and {right.proof.index}, not adjacent")
    elif right is not None and right.proof.index != 0:
        raise MerkleProofError(f"only a right neighbour, but it is leaf {right.proof.index}, not the first")
    elif left is not None and left.proof.index != size - 1:
        raise MerkleProofError(f"only a left neighbour, but it is leaf {left.proof.index}, not the last of {size}")
    if left is not None and not left.leaf < item:
        raise MerkleProofError("item does not sort after its left neighbour"
                               + (": it is that leaf, a member" if left.leaf == item else ""))
    if right is not None and not item < right.leaf:
        raise MerkleProofError("item does not sort before its right neighbour"
                               + (": it is that leaf, a member" if right.leaf == item else ""))
    for name, side in (("left", left), ("right", right)):
        if side is not None and root_from_inclusion(side.leaf, side.proof) != root:
            raise MerkleProofError(f"{name} neighbour's inclusion proof does not lead to the root")


def _check_root(root: bytes) -> None:
    if not isinstance(root, bytes) or len(root) != HASH_LEN:
        raise MerkleProofError(f"a Merkle root is a {HASH_LEN}-byte hash")


# --- strict JSON helpers ------------------------------------------------------------------------

def _exact_object(doc: Any, keys: tuple[str, ...], what: str) -> dict:
    if not isinstance(doc, dict):
        raise MerkleProofError(f"{what} must be a JSON object")
    if set(doc) != set(keys):
        missing = sorted(set(keys) - set(doc))
        extra = sorted(set(doc) - set(keys))
        raise MerkleProofError(f"{what} keys wrong: missing {missing}, unexpected {extra}")
    return doc


def _hex_bytes(value: Any, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise MerkleProofError(f"{what} must be a hex string")
    if value != value.lower():
        raise MerkleProofError(f"{what} must be lowercase hex")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MerkleProofError(f"{what} is not hex") from None
    if len(raw) * 2 != len(value):  # fromhex skips whitespace; a proof has none
        raise MerkleProofError(f"{what} is not plain hex")
    if length is not None and len(raw) != length:
        raise MerkleProofError(f"{what} is {len(raw)} bytes, expected {length}")
    return raw

"""The tagged Merkle tree: vectors recomputed by a second implementation, the module against them, bad proofs.

The second implementation below uses hashlib only and follows RFC 9162 section 2.1 literally
(recursive MTH and PATH, split at the largest power of two below n); the module builds its tree
bottom-up, so the two agree only if both get the shape right.
"""
from __future__ import annotations

import bisect
import hashlib
import re
import struct
import time

import pytest

from helpers.vectors import load_vectors
from milagro_tls.chain.hashes import tagged_hash
from milagro_tls.errors import MilagroError
from milagro_tls.merkle import (
    EMPTY_ROOT, InclusionProof, MerkleProofError, MerkleTree, Neighbour, NonMembershipProof, inclusion_proof,
    leaf_hash, merkle_root, node_hash, non_membership_proof, root_from_inclusion, verify_inclusion,
    verify_non_membership,
)

DOC = load_vectors("merkle.json")


# --- the second implementation (hashlib only) ---------------------------------------------------

def _tag(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def _leaf(d: bytes) -> bytes:
    return _tag("milagro/merkle/leaf", struct.pack(">I", len(d)) + d)


def _node(left: bytes, right: bytes) -> bytes:
    return _tag("milagro/merkle/node", left + right)


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(d: list[bytes]) -> bytes:
    if not d:
        return _tag("milagro/merkle/empty", b"")
    if len(d) == 1:
        return _leaf(d[0])
    k = _split(len(d))
    return _node(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return _path(m, d[:k]) + [_mth(d[k:])]
    return _path(m - k, d[k:]) + [_mth(d[:k])]


def _proof_json(m: int, d: list[bytes]) -> dict:
    return {"index": m, "size": len(d), "path": [h.hex() for h in _path(m, d)]}


def _leaves(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


def _tree_ids():
    return [pytest.param(t, id=f"merkle.json[trees/{t['size']}]") for t in DOC["trees"]]


def _named(section: str):
    return [pytest.param(c, id=f"merkle.json[{section}/{c['name']}]") for c in DOC[section]]


# --- the vectors, recomputed independently ------------------------------------------------------

def test_vectors_cover_the_sizes_the_design_names():
    assert [t["size"] for t in DOC["trees"]] == [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17]
    assert DOC["empty_root"] == _mth([]).hex()


@pytest.mark.parametrize("tree", _tree_ids())
def test_tree_vector_matches_second_implementation(tree):
    d = _leaves(tree["leaves"])
    assert len(d) == tree["size"]
    assert tree["leaf_hashes"] == [_leaf(x).hex() for x in d]
    assert tree["root"] == _mth(d).hex()
    assert [p["index"] for p in tree["inclusion"]] == list(range(len(d)))  # every leaf has its proof
    for p in tree["inclusion"]:
        m = p["index"]
        path = _path(m, d)
        assert p["path"] == [h.hex() for h in path]
        assert p["encoded"] == (struct.pack(">IIB", m, len(d), len(path)) + b"".join(path)).hex()


@pytest.mark.parametrize("case", _named("non_membership"))
def test_non_membership_vector_matches_second_implementation(case):
    d, item = _leaves(case["leaves"]), bytes.fromhex(case["item"])
    assert d == sorted(set(d)) and item not in d
    assert case["root"] == _mth(d).hex()
    pos = bisect.bisect_left(d, item)
    expected = {
        "size": len(d),
        "left": {"leaf": d[pos - 1].hex(), "proof": _proof_json(pos - 1, d)} if pos > 0 else None,
        "right": {"leaf": d[pos].hex(), "proof": _proof_json(pos, d)} if pos < len(d) else None,
    }
    assert case["proof"] == expected


def test_non_membership_vectors_cover_every_shape():
    shapes = {(c["proof"]["left"] is None, c["proof"]["right"] is None) for c in DOC["non_membership"]}
    assert shapes == {(True, True), (True, False), (False, True), (False, False)}


# --- the module against the vectors -------------------------------------------------------------

def test_hashes_are_the_designs_tagged_hashes():
    assert leaf_hash(b"abc") == tagged_hash("milagro/merkle/leaf", b"\x00\x00\x00\x03abc")
    assert node_hash(b"\x01" * 32, b"\x02" * 32) == tagged_hash("milagro/merkle/node", b"\x01" * 32 + b"\x02" * 32)
    assert EMPTY_ROOT == tagged_hash("milagro/merkle/empty", b"") == bytes.fromhex(DOC["empty_root"])


@pytest.mark.parametrize("tree", _tree_ids())
def test_module_matches_tree_vector(tree):
    d = _leaves(tree["leaves"])
    root = bytes.fromhex(tree["root"])
    assert merkle_root(d) == root
    t = MerkleTree(d)
    assert t.root == root and t.size == len(d)
    assert MerkleTree.from_leaf_hashes(_leaves(tree["leaf_hashes"])).root == root
    for p in tree["inclusion"]:
        m = p["index"]
        proof = t.inclusion_proof(m)
        assert proof == inclusion_proof(d, m)
        assert proof.to_json() == {"index": m, "size": len(d), "path": p["path"]}
        assert proof.encode().hex() == p["encoded"]
        assert InclusionProof.decode(bytes.fromhex(p["encoded"])) == proof
        assert InclusionProof.from_json(proof.to_json()) == proof
        assert root_from_inclusion(d[m], proof) == root
        assert verify_inclusion(d[m], proof, root) is None


@pytest.mark.parametrize("case", _named("non_membership"))
def test_module_matches_non_membership_vector(case):
    d, item, root = _leaves(case["leaves"]), bytes.fromhex(case["item"]), bytes.fromhex(case["root"])
    proof = non_membership_proof(d, item)
    assert proof.to_json() == case["proof"]
    assert NonMembershipProof.from_json(case["proof"]) == proof
    assert verify_non_membership(item, proof, root) is None


@pytest.mark.parametrize("case", _named("invalid_inclusion"))
def test_bad_inclusion_proof_refused(case):
    with pytest.raises(MerkleProofError, match=f"^{re.escape(case['error'])}$"):
        proof = InclusionProof.from_json(case["proof"])
        verify_inclusion(bytes.fromhex(case["leaf"]), proof, bytes.fromhex(case["root"]))


@pytest.mark.parametrize("case", _named("invalid_encoded"))
def test_bad_encoded_inclusion_proof_refused(case):
    with pytest.raises(MerkleProofError, match=f"^{re.escape(case['error'])}$"):
        InclusionProof.decode(bytes.fromhex(case["encoded"]))


@pytest.mark.parametrize("case", _named("invalid_non_membership"))
def test_bad_non_membership_proof_refused(case):
    with pytest.raises(MerkleProofError, match=f"^{re.escape(case['error'])}$"):
        proof = NonMembershipProof.from_json(case["proof"])
        verify_non_membership(bytes.fromhex(case["item"]), proof, bytes.fromhex(case["root"]))


@pytest.mark.parametrize("case", _named("invalid_sorted_list"))
def test_non_membership_proof_needs_strictly_ascending_list_without_the_item(case):
    with pytest.raises(ValueError, match=f"^{re.escape(case['error'])}$"):
        non_membership_proof(_leaves(case["leaves"]), bytes.fromhex(case["item"]))


# --- properties the design relies on -------------------------------------------------------------

def test_no_duplication_cve_2012_2459():
    # Bitcoin's tree gives [a, b, c] and [a, b, c, c] one root; ours must not.
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])


def test_inner_node_cannot_pose_as_a_leaf():
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    root2 = merkle_root([b"a", b"b"])
    assert root2 == node_hash(a, b)
    assert merkle_root([a + b]) != root2          # the node's preimage as leaf data
    assert leaf_hash(a + b) != node_hash(a, b)


def test_length_prefix_separates_leaf_boundaries():
    assert leaf_hash(b"") != leaf_hash(b"\x00")
    assert merkle_root([b"ab", b"c"]) != merkle_root([b"a", b"bc"])


def test_proof_for_one_tree_does_not_verify_in_the_next():
    leaves = [b"leaf %d" % i for i in range(6)]
    proof = inclusion_proof(leaves, 2)
    with pytest.raises(MerkleProofError, match="^inclusion proof for leaf 2 of 6 does not lead to the root$"):
        verify_inclusion(leaves[2], proof, merkle_root(leaves + [b"leaf 6"]))


def test_errors_root_in_milagro_error():
    assert issubclass(MerkleProofError, MilagroError)


def test_tree_refuses_out_of_range_index():
    t = MerkleTree([b"a", b"b", b"c"])
    for bad in (3, -1, True):
        with pytest.raises(IndexError, match="out of range for a tree of 3 leaves"):
            t.inclusion_proof(bad)
    with pytest.raises(IndexError, match="out of range for a tree of 0 leaves"):
        MerkleTree([]).inclusion_proof(0)


def test_tree_from_hashes_cannot_prove_non_membership():
    with pytest.raises(ValueError, match="^a tree built from leaf hashes has no leaf data"):
        MerkleTree.from_leaf_hashes([leaf_hash(b"a")]).non_membership_proof(b"b")


def test_proof_constructed_by_hand_is_checked():
    with pytest.raises(MerkleProofError, match=r"^inclusion proof path\[0\] is not a 32-byte hash$"):
        InclusionProof(0, 2, (b"\x00" * 31,))
    with pytest.raises(MerkleProofError, match="^neighbour proof must be an InclusionProof$"):
        Neighbour(b"a", None)


def test_every_proof_of_many_sizes_round_trips_and_verifies():
    # Sizes 1..70 cross every power-of-two boundary a few times; the second implementation agrees.
    base = [b"x%d" % i for i in range(70)]
    for n in range(1, 71):
        d = base[:n]
        t = MerkleTree(d)
        assert t.root == _mth(d)
        for m in range(n):
            p = t.inclusion_proof(m)
            assert list(p.path) == _path(m, d)
            assert InclusionProof.decode(p.encode()) == p
            verify_inclusion(d[m], p, t.root)


def test_hundred_thousand_leaves_and_a_batch_of_proofs_are_fast():
    leaves = [i.to_bytes(32, "big") for i in range(100_000)]
    start = time.perf_counter()
    t = MerkleTree(leaves)
    root = t.root
    proofs = [t.inclusion_proof(i) for i in range(0, 100_000, 100_000 // 128)]
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"tree of 100k leaves and 128 proofs took {elapsed:.2f}s"
    for p in proofs[:: 16]:
        verify_inclusion(leaves[p.index], p, root)
    # Non-membership over the same (sorted) list: an absent 33-byte item between two leaves.
    item = (500).to_bytes(32, "big") + b"\x00"
    nm = t.non_membership_proof(item)
    assert (nm.left.proof.index, nm.right.proof.index) == (500, 501)
    verify_non_membership(item, nm, root)


def test_edges_and_adjacency_are_authenticated_by_a_bare_root():
    # The root does not bind a proof's claimed size, so try every claim (i, s) with every real path:
    # whatever verifies at index 0 is the real first leaf, at s-1 the real last, and claims i, i+1
    # of one size are real neighbours. verify_non_membership relies on exactly this.
    for n in range(1, 19):
        d = [b"leaf %d" % i for i in range(n)]
        t = MerkleTree(d)
        real = {a: t.inclusion_proof(a).path for a in range(n)}
        for s in range(1, 25):
            claimed: dict[int, int] = {}
            for i in range(s):
                for a, path in real.items():
                    try:
                        proof = InclusionProof(i, s, path)
                    except MerkleProofError:
                        continue  # the path length does not fit (i, s)
                    if root_from_inclusion(d[a], proof) == t.root:
                        assert i not in claimed, (n, s, i)
                        claimed[i] = a
            if 0 in claimed:
                assert claimed[0] == 0, (n, s)
            if s - 1 in claimed:
                assert claimed[s - 1] == n - 1, (n, s)
            for i in claimed:
                if i + 1 in claimed:
                    assert claimed[i + 1] == claimed[i] + 1, (n, s, i)
            if s == n:
                assert claimed == {a: a for a in range(n)}


def test_verifiers_refuse_a_root_that_is_not_a_hash():
    proof = inclusion_proof([b"a", b"b"], 0)
    with pytest.raises(MerkleProofError, match="^a Merkle root is a 32-byte hash$"):
        verify_inclusion(b"a", proof, merkle_root([b"a", b"b"]).hex())
    with pytest.raises(MerkleProofError, match="^a Merkle root is a 32-byte hash$"):
        verify_non_membership(b"c", non_membership_proof([b"a", b"b"], b"c"), b"")

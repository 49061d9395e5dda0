"""Generate tests/vectors/merkle.json: roots, every inclusion proof, non-membership proofs, bad proofs.

Run from the repository root:  .venv/bin/python tests/vectors/generate_merkle_vectors.py
The output is deterministic (fixed leaves, sorted keys). tests/test_merkle.py recomputes every
valid vector with a hashlib-only implementation of RFC 9162's recursive definitions written in
the test, not with milagro_tls.merkle, and checks the module against each valid and invalid case.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from milagro_tls.merkle import (
    EMPTY_ROOT, MerkleTree, Neighbour, NonMembershipProof, non_membership_proof,
)

HERE = Path(__file__).parent
GENERATED_BY = "tests/vectors/generate_merkle_vectors.py"
SOURCE = ("milagro_tls.merkle: RFC 9162 section 2.1 tree shape with BIP340 tagged hashes "
          "milagro/merkle/leaf (u32be length || data), milagro/merkle/node, milagro/merkle/empty")
SIZES = (0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17)


def tree_leaf(i: int) -> bytes:
    # Lengths 0, 7, 14, ... 32 then wrapping: the empty leaf and varied lengths exercise the prefix.
    return hashlib.sha256(b"milagro merkle vector leaf %d" % i).digest()[: (i * 7) % 33]


def trees() -> list[dict]:
    out = []
    for n in SIZES:
        leaves = [tree_leaf(i) for i in range(n)]
        tree = MerkleTree(leaves)
        proofs = [tree.inclusion_proof(i) for i in range(n)]
        out.append({
            "size": n,
            "leaves": [d.hex() for d in leaves],
            "leaf_hashes": [tree.leaf_hash(i).hex() for i in range(n)],
            "root": tree.root.hex(),
            "inclusion": [{"index": p.index, "path": [h.hex() for h in p.path], "encoded": p.encode().hex()}
                          for p in proofs],
        })
    return out


SORTED_LISTS = {
    "empty": [],
    "one": [b"\x40"],
    "five": [b"\x10", b"\x20\x00", b"\x30", b"\x40", b"\x50"],
    "seven": [bytes([0x11 * (i + 1)]) * 2 for i in range(7)],
}
NON_MEMBERS = [
    ("empty list", "empty", b"\x01"),
    ("single leaf, before it", "one", b"\x3f\xff"),
    ("single leaf, after it", "one", b"\x40\x00"),
    ("before the first", "five", b"\x05"),
    ("between neighbours", "five", b"\x25"),
    ("proper prefix of a leaf sorts before it", "five", b"\x20"),
    ("after the last", "five", b"\x60"),
    ("between the last two of an odd list", "seven", b"\x70"),
    ("between leaves 3 and 4 of an odd list", "seven", b"\x45"),
]


def non_membership() -> list[dict]:
    out = []
    for name, list_name, item in NON_MEMBERS:
        leaves = SORTED_LISTS[list_name]
        out.append({"name": name, "leaves": [d.hex() for d in leaves], "item": item.hex(),
                    "root": MerkleTree(leaves).root.hex(),
                    "proof": non_membership_proof(leaves, item).to_json()})
    return out


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def invalid_inclusion() -> list[dict]:
    leaves = [tree_leaf(i) for i in range(7)]
    tree = MerkleTree(leaves)
    root = tree.root.hex()
    p3 = tree.inclusion_proof(3)
    good = p3.to_json()

    def case(name, proof, error, leaf=leaves[3]):
        return {"name": name, "leaf": leaf.hex(), "root": root, "proof": proof, "error": error}

    return [
        case("tampered path", {**good, "path": [good["path"][0], _flip(p3.path[1]).hex(), good["path"][2]]},
             "inclusion proof for leaf 3 of 7 does not lead to the root"),
        case("wrong index (same path length)", {**good, "index": 2},
             "inclusion proof for leaf 2 of 7 does not lead to the root"),
        case("wrong size (path length no longer fits)", {**good, "size": 4},
             "inclusion proof path has 3 hashes; leaf 3 of 4 needs 2"),
        case("wrong size and index (another shape, same length)", {**good, "index": 4, "size": 8},
             "inclusion proof for leaf 4 of 8 does not lead to the root"),
        case("another leaf's data", good, "inclusion proof for leaf 3 of 7 does not lead to the root",
             leaf=leaves[4]),
        case("index equals size", {**good, "index": 7}, "inclusion proof index 7 out of range for size 7"),
        case("zero size", {"index": 0, "size": 0, "path": []}, "inclusion proof size 0 out of range 1..4294967295"),
        case("size beyond u32", {"index": 0, "size": 2**32, "path": []}, "inclusion proof size 4294967296 out of range 1..4294967295"),
        case("negative index", {**good, "index": -1}, "inclusion proof index -1 out of range for size 7"),
        case("path one hash too long", {**good, "path": good["path"] + [good["path"][0]]},
             "inclusion proof path has 4 hashes; leaf 3 of 7 needs 3"),
        case("path one hash too short", {**good, "path": good["path"][:2]},
             "inclusion proof path has 2 hashes; leaf 3 of 7 needs 3"),
        case("last leaf of 7 has a shorter path", {**good, "index": 6},
             "inclusion proof path has 3 hashes; leaf 6 of 7 needs 2"),
        case("path over the bound", {**good, "path": [good["path"][0]] * 65},
             "inclusion proof path has 65 hashes, more than 64"),
        case("31-byte hash", {**good, "path": [good["path"][0][:62]] + good["path"][1:]},
             "inclusion proof path[0] is 31 bytes, expected 32"),
        case("non-hex hash", {**good, "path": ["zz" * 32] + good["path"][1:]}, "inclusion proof path[0] is not hex"),
        case("uppercase hex", {**good, "path": [good["path"][0].upper()] + good["path"][1:]},
             "inclusion proof path[0] must be lowercase hex"),
        case("boolean index", {**good, "index": True}, "inclusion proof index must be an integer, got bool"),
        case("string size", {**good, "size": "7"}, "inclusion proof size must be an integer, got str"),
        case("path not a list", {**good, "path": good["path"][0]}, "inclusion proof path must be a JSON list"),
        case("unknown key", {**good, "root": root}, "inclusion proof keys wrong: missing [], unexpected ['root']"),
        case("missing key", {"index": 3, "size": 7}, "inclusion proof keys wrong: missing ['path'], unexpected []"),
    ]


def invalid_encoded() -> list[dict]:
    tree = MerkleTree([tree_leaf(i) for i in range(5)])
    enc = tree.inclusion_proof(1).encode()  # 9 + 3 * 32 bytes
    h = tree.inclusion_proof(1).path[0]
    return [
        {"name": "shorter than the header", "encoded": enc[:8].hex(),
         "error": "inclusion proof is 8 bytes, shorter than its 9-byte header"},
        {"name": "truncated path", "encoded": enc[:-1].hex(),
         "error": "inclusion proof is 104 bytes; a path of 3 hashes needs 105"},
        {"name": "trailing byte", "encoded": (enc + b"\x00").hex(),
         "error": "inclusion proof is 106 bytes; a path of 3 hashes needs 105"},
        {"name": "count over the bound", "encoded": (enc[:8] + bytes([65]) + h * 65).hex(),
         "error": "inclusion proof path has 65 hashes, more than 64"},
        {"name": "index equals size", "encoded": ((5).to_bytes(4, "big") + enc[4:]).hex(),
         "error": "inclusion proof index 5 out of range for size 5"},
        {"name": "count wrong for (index, size)", "encoded": (enc[:8] + bytes([2]) + enc[9:9 + 64]).hex(),
         "error": "inclusion proof path has 2 hashes; leaf 1 of 5 needs 3"},
        {"name": "size zero", "encoded": (bytes(8) + b"\x00").hex(), "error": "inclusion proof size 0 out of range 1..4294967295"},
    ]


def invalid_non_membership() -> list[dict]:
    five = SORTED_LISTS["five"]
    tree = MerkleTree(five)
    root = tree.root.hex()

    def nb(i: int) -> Neighbour:
        return Neighbour(five[i], tree.inclusion_proof(i))

    def case(name, item, proof, error, root=root):
        return {"name": name, "item": item.hex(), "root": root, "proof": proof, "error": error}

    def nmp(left, right):
        return NonMembershipProof(5, left, right).to_json()

    other_root = MerkleTree(five[:4] + [b"\x55"]).root.hex()
    good = non_membership_proof(five, b"\x25").to_json()
    tampered = {**good, "left": {**good["left"], "leaf": "21"}}
    return [
        case("member presented as non-member (equals left)", five[2], nmp(nb(2), nb(3)),
             "item does not sort after its left neighbour: it is that leaf, a member"),
        case("member presented as non-member (equals right)", five[2], nmp(nb(1), nb(2)),
             "item does not sort before its right neighbour: it is that leaf, a member"),
        case("member presented as before-first", five[0], nmp(None, nb(0)),
             "item does not sort before its right neighbour: it is that leaf, a member"),
        case("neighbours not adjacent", b"\x25", nmp(nb(1), nb(3)), "neighbours are leaves 1 and 3, not adjacent"),
        case("neighbours swapped", b"\x25", nmp(nb(2), nb(1)), "neighbours are leaves 2 and 1, not adjacent"),
        case("item outside its neighbours", b"\x45", nmp(nb(1), nb(2)),
             "item does not sort before its right neighbour"),
        case("right-only neighbour is not the first leaf", b"\x25", nmp(None, nb(2)),
             "only a right neighbour, but it is leaf 2, not the first"),
        case("left-only neighbour is not the last leaf", b"\x45", nmp(nb(3), None),
             "only a left neighbour, but it is leaf 3, not the last of 5"),
        case("tampered neighbour leaf", b"\x25", tampered, "left neighbour's inclusion proof does not lead to the root"),
        case("another list's root", b"\x25", good, "left neighbour's inclusion proof does not lead to the root",
             root=other_root),
        case("empty claimed for a non-empty list", b"\x25", {"size": 0, "left": None, "right": None},
             "non-membership proof claims an empty list but the root is not the empty root"),
        case("no neighbour for a non-empty list", b"\x25", {"size": 5, "left": None, "right": None},
             "non-membership proof for a list of 5 leaves has no neighbour"),
        case("neighbour from a tree of another size", b"\x25", {**good, "size": 6},
             "neighbour proof is for a tree of 5 leaves, not 6"),
        case("unknown key", b"\x25", {**good, "extra": 1},
             "non-membership proof keys wrong: missing [], unexpected ['extra']"),
    ]


def unsorted_lists() -> list[dict]:
    return [
        {"name": "descending pair", "leaves": ["20", "10"], "item": "15",
         "error": "leaves are not strictly ascending at index 1"},
        {"name": "duplicate leaf", "leaves": ["10", "20", "20", "30"], "item": "25",
         "error": "leaves are not strictly ascending at index 2"},
        {"name": "item is a member", "leaves": ["10", "20", "30"], "item": "20",
         "error": "item is leaf 1 of the list: it is a member"},
    ]


def main() -> None:
    doc = {
        "source": SOURCE,
        "generated_by": GENERATED_BY,
        "empty_root": EMPTY_ROOT.hex(),
        "trees": trees(),
        "non_membership": non_membership(),
        "invalid_inclusion": invalid_inclusion(),
        "invalid_encoded": invalid_encoded(),
        "invalid_non_membership": invalid_non_membership(),
        "invalid_sorted_list": unsorted_lists(),
    }
    (HERE / "merkle.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

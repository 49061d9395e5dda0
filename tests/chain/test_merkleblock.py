"""parse_merkleblock on Core's documented gettxoutproof example and on proofs built here."""
from __future__ import annotations

import pytest
from embit import compact
from helpers.fixtures import fixture_path

from milagro_tls.chain.errors import ProofMismatch
from milagro_tls.chain.hashes import from_display_hex, sha256d
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.merkle import merkle_root
from milagro_tls.chain.merkleblock import MAX_TRANSACTIONS, parse_merkleblock
from milagro_tls.errors import MalformedInput

PROOF_BLOCK = "0000000000000000140e84bf183d8d5207d65fbfae596bdf48f684d13d951847"
PROOF_TXID = "f20e44c818ec332d95119507fbe36f1b8b735e2c387db62adbe28e50f7904683"


def _fixture_proof() -> bytes:
    return bytes.fromhex(fixture_path("rpc", "mainnet_gettxoutproof.bitcoin-org.hex").read_text().strip())


def _width(total: int, height: int) -> int:
    return (total + (1 << height) - 1) >> height


def build_partial_tree(txids: list[bytes], matched: set[int]) -> tuple[list[bytes], bytes]:
    """Core's CPartialMerkleTree constructor (TraverseAndBuild): hashes and flag bytes."""
    total = len(txids)

    def node_hash(height: int, pos: int) -> bytes:
        if height == 0:
            return txids[pos]
        left = node_hash(height - 1, pos * 2)
        right = node_hash(height - 1, pos * 2 + 1) if pos * 2 + 1 < _width(total, height - 1) else left
        return sha256d(left + right)

    hashes, bits = [], []

    def build(height: int, pos: int) -> None:
        parent_of_match = any(i in matched for i in range(pos << height, min((pos + 1) << height, total)))
        bits.append(parent_of_match)
        if height == 0 or not parent_of_match:
            hashes.append(node_hash(height, pos))
        else:
            build(height - 1, pos * 2)
            if pos * 2 + 1 < _width(total, height - 1):
                build(height - 1, pos * 2 + 1)

    height = 0
    while _width(total, height) > 1:
        height += 1
    build(height, 0)
    flags = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        flags[i // 8] |= bit << (i % 8)
    return hashes, bytes(flags)


def serialize_merkleblock(root: bytes, total: int, hashes: list[bytes], flags: bytes) -> bytes:
    header = BlockHeader(1, b"\x00" * 32, root, 0, 0x207FFFFF, 0).serialize()
    return (header + total.to_bytes(4, "little") + compact.to_bytes(len(hashes)) + b"".join(hashes)
            + compact.to_bytes(len(flags)) + flags)


def _txids(n: int) -> list[bytes]:
    return [sha256d(i.to_bytes(4, "little")) for i in range(n)]


def test_documented_gettxoutproof_proves_its_txid_at_its_position():
    header, total, matched = parse_merkleblock(_fixture_proof())
    assert header.hash == from_display_hex(PROOF_BLOCK)
    assert total == 2251
    assert matched == [(from_display_hex(PROOF_TXID), 1370)]


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8, 13, 64, 100])
def test_built_proofs_round_trip_for_any_set_of_matches(total):
    txids = _txids(total)
    for matched in ({0}, {total - 1}, {total // 2, total - 1}, set(range(0, total, 3)), set()):
        hashes, flags = build_partial_tree(txids, matched)
        _, parsed_total, found = parse_merkleblock(
            serialize_merkleblock(merkle_root(txids), total, hashes, flags))
        assert parsed_total == total
        assert found == [(txids[i], i) for i in sorted(matched)]


def test_proof_against_another_root_is_rejected():
    txids = _txids(7)
    hashes, flags = build_partial_tree(txids, {3})
    with pytest.raises(ProofMismatch, match="root"):
        parse_merkleblock(serialize_merkleblock(sha256d(b"other"), 7, hashes, flags))


def test_tampered_hash_in_the_documented_proof_breaks_the_root():
    raw = bytearray(_fixture_proof())
    raw[80 + 4 + 3 + 5] ^= 1                      # inside the first hash of the tree
    with pytest.raises(ProofMismatch, match="root"):
        parse_merkleblock(bytes(raw))


def test_duplicated_last_transaction_trick_is_rejected():
    # CVE-2012-2459: [a, b, c] and [a, b, c, c] share a root; a proof for the second
    # shape would claim a fourth transaction that the block does not have.
    three = _txids(3)
    four = three + [three[2]]
    assert merkle_root(four) == merkle_root(three)
    for matched in ({3}, {2}):
        hashes, flags = build_partial_tree(four, matched)
        with pytest.raises(ProofMismatch, match="CVE-2012-2459"):
            parse_merkleblock(serialize_merkleblock(merkle_root(three), 4, hashes, flags))


def test_unused_hash_is_rejected():
    txids = _txids(6)
    hashes, flags = build_partial_tree(txids, {4})
    with pytest.raises(ProofMismatch, match="unused hashes"):
        parse_merkleblock(serialize_merkleblock(merkle_root(txids), 6, hashes + [txids[0]], flags))


def test_unused_flag_byte_is_rejected():
    txids = _txids(6)
    hashes, flags = build_partial_tree(txids, {4})
    with pytest.raises(ProofMismatch, match="unused flag"):
        parse_merkleblock(serialize_merkleblock(merkle_root(txids), 6, hashes, flags + b"\x00"))


def test_flipped_flag_bit_of_an_inner_node_is_rejected():
    txids = _txids(6)
    hashes, flags = build_partial_tree(txids, {4})
    # Depth first: root, node 0 of height 2 (no match: hash given), node 1 of height 2,
    # node 2 of height 1, leaves 4 and 5. Bits 6 and 7 pad the byte.
    assert flags == bytes([0b011101])
    for bit in range(4):
        tampered = bytes([flags[0] ^ (1 << bit)])
        with pytest.raises(ProofMismatch):
            parse_merkleblock(serialize_merkleblock(merkle_root(txids), 6, hashes, tampered))


def test_flipped_flag_bit_of_a_leaf_only_changes_the_matches():
    # A leaf's hash is given whatever its bit says, so Core accepts the flip: the bit
    # only chooses what is reported. A caller must check the match is the txid it asked for.
    txids = _txids(6)
    hashes, flags = build_partial_tree(txids, {4})
    root = merkle_root(txids)
    assert parse_merkleblock(serialize_merkleblock(root, 6, hashes, bytes([flags[0] ^ 1 << 4])))[2] == []
    assert parse_merkleblock(serialize_merkleblock(root, 6, hashes, bytes([flags[0] ^ 1 << 5])))[2] == [
        (txids[4], 4), (txids[5], 5)]


def test_padding_bits_are_ignored_as_in_core():
    # Core checks only that the used bits fill the flag bytes to the last byte.
    txids = _txids(6)
    hashes, flags = build_partial_tree(txids, {4})
    _, _, matched = parse_merkleblock(serialize_merkleblock(merkle_root(txids), 6, hashes, bytes([flags[0] | 0xC0])))
    assert matched == [(txids[4], 4)]


def test_missing_hashes_are_rejected():
    txids = _txids(6)
    hashes, flags = build_partial_tree(txids, {4})
    with pytest.raises(ProofMismatch, match="runs out of hashes"):
        parse_merkleblock(serialize_merkleblock(merkle_root(txids), 6, hashes[:-1], flags))


@pytest.mark.parametrize("total, reason", [(0, "at least one"), (MAX_TRANSACTIONS + 1, "cannot fit")])
def test_impossible_transaction_counts_are_rejected(total, reason):
    # (without the count check the second would still fail, later: it runs out of flag bits)
    with pytest.raises(ProofMismatch, match=reason):
        parse_merkleblock(serialize_merkleblock(b"\x00" * 32, total, [b"\x00" * 32], b"\x01"))
    # the largest count a block can hold is accepted (a proof of no match: the root alone)
    root = sha256d(b"root")
    assert parse_merkleblock(serialize_merkleblock(root, MAX_TRANSACTIONS, [root], b"\x00"))[1:] == (
        MAX_TRANSACTIONS, [])


def test_more_hashes_than_transactions_is_rejected():
    txids = _txids(2)
    with pytest.raises(ProofMismatch, match="more hashes"):
        parse_merkleblock(serialize_merkleblock(merkle_root(txids), 1, txids, b"\x01"))


def test_truncated_and_trailing_bytes_are_malformed():
    raw = _fixture_proof()
    for cut in (79, 83, 100, len(raw) - 1):
        with pytest.raises(MalformedInput):
            parse_merkleblock(raw[:cut])
    with pytest.raises(MalformedInput, match="trailing"):
        parse_merkleblock(raw + b"\x00")


def test_non_canonical_compact_size_is_malformed():
    raw = _fixture_proof()
    count = raw[84]                                  # the hash count, one byte in this proof
    assert count < 0xFD
    with pytest.raises(MalformedInput, match="non-canonical"):
        parse_merkleblock(raw[:84] + b"\xfd" + count.to_bytes(2, "little") + raw[85:])

"""The block primitives against two real mainnet blocks (one pre-segwit, one with witnesses)."""
from __future__ import annotations

import json

import pytest
from helpers.fixtures import fixture_path

from milagro_tls.chain.block import Block, commitment_for, witness_commitment, witness_reserved_value
from milagro_tls.chain.errors import HeaderRejected
from milagro_tls.chain.hashes import from_display_hex, to_display_hex
from milagro_tls.chain.merkle import merkle_branch, merkle_root, root_from_branch
from milagro_tls.chain.network import PARAMS, Network
from milagro_tls.chain.tx import is_coinbase, wtxid_of

MAINNET_POW_LIMIT = PARAMS[Network.MAINNET].pow_limit_bits

# (file, height, hash from the fixtures README, transaction count)
BLOCKS = [
    pytest.param("mainnet_277647.bin", 277647,
                 "0000000000000000054a714e580b16c583701712ab91060e92dbde6eb1e052a8", 213, id="277647"),
    pytest.param("mainnet_951658.bin", 951658,
                 "00000000000000000001cbe4b4add61d60d9a470e0958f1b4024f202db9ca628", 374, id="951658"),
]


def _raw(name: str) -> bytes:
    return fixture_path("blocks", name).read_bytes()


@pytest.fixture(scope="module")
def segwit_block() -> Block:
    return Block.parse(_raw("mainnet_951658.bin"))


@pytest.mark.parametrize("name, height, block_hash, tx_count", BLOCKS)
def test_block_parses_and_reserializes_byte_for_byte(name, height, block_hash, tx_count):
    raw = _raw(name)
    block = Block.parse(raw)
    assert block.serialize() == raw
    assert len(block.txs) == tx_count


@pytest.mark.parametrize("name, height, block_hash, tx_count", BLOCKS)
def test_block_hash_merkle_root_and_proof_of_work_match_the_header(name, height, block_hash, tx_count):
    block = Block.parse(_raw(name))
    assert block.hash == from_display_hex(block_hash)
    assert block.computed_merkle_root() == block.header.merkle_root
    block.header.check_proof_of_work(MAINNET_POW_LIMIT)


@pytest.mark.parametrize("name, height, block_hash, tx_count", BLOCKS)
def test_coinbase_is_first_alone_and_commits_to_its_height(name, height, block_hash, tx_count):
    block = Block.parse(_raw(name))
    assert is_coinbase(block.txs[0])
    assert not any(is_coinbase(tx) for tx in block.txs[1:])
    # BIP34: the coinbase script starts with a push of the height (3 bytes at these heights).
    script = block.txs[0].vin[0].script_sig.data
    assert script[0] == 3 and int.from_bytes(script[1:4], "little") == height


@pytest.mark.parametrize("name, height, block_hash, tx_count", BLOCKS)
def test_spv_branch_of_each_sampled_transaction_gives_the_header_root(name, height, block_hash, tx_count):
    block = Block.parse(_raw(name))
    txids = block.txids()
    for index in (1, tx_count // 2, tx_count - 1):
        branch = merkle_branch(txids, index)
        assert root_from_branch(txids[index], index, branch) == block.header.merkle_root


@pytest.mark.parametrize("name, height, block_hash, tx_count", BLOCKS)
def test_wrong_index_does_not_give_the_header_root(name, height, block_hash, tx_count):
    block = Block.parse(_raw(name))
    txids = block.txids()
    branch = merkle_branch(txids, 1)
    assert root_from_branch(txids[1], 0, branch) != block.header.merkle_root
    assert root_from_branch(txids[1], 3, branch) != block.header.merkle_root
    with pytest.raises(ValueError):
        root_from_branch(txids[1], 1 << len(branch), branch)


@pytest.mark.parametrize("name, height, block_hash, tx_count", BLOCKS)
def test_flipped_byte_in_a_transaction_breaks_the_root(name, height, block_hash, tx_count):
    raw = _raw(name)
    block = Block.parse(raw)
    # The version of a transaction in the middle, and the lock time of the last one:
    # both are in the txid serialization, and both flips still parse.
    middle = tx_count // 2
    offset = len(raw) - sum(len(tx) for tx in block.raw_txs[middle:])
    for position in (offset, len(raw) - 1):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        assert Block.parse(bytes(tampered)).computed_merkle_root() != block.header.merkle_root


def test_tampered_nonce_fails_proof_of_work():
    raw = bytearray(_raw("mainnet_951658.bin"))
    raw[76] ^= 0x01
    with pytest.raises(HeaderRejected) as exc:
        Block.parse(bytes(raw)).header.check_proof_of_work(MAINNET_POW_LIMIT)
    assert exc.value.rule == "high-hash"


def test_witness_commitment_of_951658_covers_its_wtxids(segwit_block):
    coinbase = segwit_block.txs[0]
    reserved = witness_reserved_value(coinbase)
    assert reserved is not None
    witness_root = merkle_root(segwit_block.wtxids())
    assert commitment_for(witness_root, reserved) == witness_commitment(coinbase)


def test_wtxid_branch_of_a_segwit_transaction_reaches_the_commitment(segwit_block):
    wtxids = segwit_block.wtxids()
    index = next(i for i, tx in enumerate(segwit_block.txs) if i and tx.is_segwit)
    wtxid = wtxid_of(segwit_block.raw_txs[index])
    assert wtxid != segwit_block.txids()[index]          # the witness is part of the wtxid
    root = root_from_branch(wtxid, index, merkle_branch(wtxids, index))
    coinbase = segwit_block.txs[0]
    assert commitment_for(root, witness_reserved_value(coinbase)) == witness_commitment(coinbase)


def test_951658_agrees_with_core_getblock_output(segwit_block):
    doc = json.loads(fixture_path("rpc", "mainnet_getblock_951658.electrumx.json").read_text())
    assert bytes.fromhex(doc["block"]) == segwit_block.serialize()
    assert [to_display_hex(txid) for txid in segwit_block.txids()] == doc["tx"]
    assert segwit_block.header.hash_hex == doc["hash"]
    assert to_display_hex(segwit_block.header.merkle_root) == doc["merkleroot"]
    assert f"{segwit_block.header.bits:08x}" == doc["bits"]
    assert len(segwit_block.txs) == doc["nTx"]


def test_segwit_transactions_of_951658_are_counted_as_the_readme_says(segwit_block):
    non_coinbase = segwit_block.txs[1:]
    assert sum(tx.is_segwit for tx in non_coinbase) == 368

"""Blocks through the embedded node: Bitcoin Core's kernel accepts valid ones and refuses bad ones."""
from __future__ import annotations

import time

import pytest

from milagro_tls.chain.block import Block, commitment_for, witness_commitment, witness_reserved_value
from milagro_tls.chain.errors import BlockNotFound, BlockRejected
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.merkle import merkle_root
from milagro_tls.chain.network import PARAMS, Network
from milagro_tls.chain.node.miner import grind, push_int, script_num, subsidy
from milagro_tls.chain.node.wallet import P2wpkhKey

KEY = P2wpkhKey(bytes([7]) * 32)
OTHER = b"\x00\x14" + b"\x22" * 20


def coinbase_outpoint(node, height):
    block = Block.parse(node.block(node.block_hash(height)))
    return block.txids()[0], block.txs[0].vout[0].value


def assert_nothing_indexed(node, raw_block, tip_before):
    """The tip did not move and no transaction of the refused block is in the index."""
    assert node.tip() == tip_before
    block = Block.parse(raw_block)
    assert node.height_of(block.hash) is None
    for txid in block.txids():
        assert node.tx_location(txid) is None
        assert node.utxo(txid, 0, include_mempool=False) is None


def test_script_num_and_bip34_pushes():
    assert script_num(0) == b"" and script_num(127) == b"\x7f" and script_num(128) == b"\x80\x00"
    assert script_num(-1) == b"\x81" and script_num(255) == b"\xff\x00" and script_num(256) == b"\x00\x01"
    assert push_int(0) == b"\x00" and push_int(1) == b"\x51" and push_int(16) == b"\x60"
    assert push_int(17) == b"\x01\x11" and push_int(128) == b"\x02\x80\x00" and push_int(256) == b"\x02\x00\x01"
    assert subsidy(0) == subsidy(149) == 50 * 10**8 and subsidy(150) == 25 * 10**8 and subsidy(300) == 1_250_000_000


def test_valid_chain_readback_bip34_and_halving(regtest_node):
    node = regtest_node
    genesis = node.tip()
    assert genesis.height == 0 and genesis.block_hash == PARAMS[Network.REGTEST].genesis_hash
    started = time.perf_counter()
    hashes = node.mine(256)
    elapsed = time.perf_counter() - started
    assert elapsed < 3, f"mining 256 blocks took {elapsed:.2f}s"
    assert node.tip().height == 256 and node.tip().block_hash == hashes[-1]
    for height in (1, 100, 256):
        h = node.block_hash(height)
        assert h == hashes[height - 1] and node.height_of(h) == height
        raw_header = node.header(height)
        assert raw_header == node.header_by_hash(h)
        header = BlockHeader.parse(raw_header)
        assert header.hash == h and header.bits == 0x207FFFFF and header.version == 0x20000000
        assert header.prev_hash == node.block_hash(height - 1)
        block = Block.parse(node.block(h))
        assert block.header == header and block.computed_merkle_root() == header.merkle_root
        assert node.tx_location(block.txids()[0]) == (h, height, 0)
        assert node.transaction(block.txids()[0]) == block.raw_txs[0]
    # BIP34: Core compares against `CScript() << height` (OP_1..OP_16 for 1..16).
    expected = {1: b"\x51", 16: b"\x60", 17: b"\x01\x11", 128: b"\x02\x80\x00", 256: b"\x02\x00\x01"}
    for height, prefix in expected.items():
        script_sig = Block.parse(node.block(node.block_hash(height))).txs[0].vin[0].script_sig.data
        assert script_sig.startswith(prefix) and len(script_sig) >= 2
    # The regtest halving at 150
    assert coinbase_outpoint(node, 149)[1] == 50 * 10**8
    assert coinbase_outpoint(node, 150)[1] == 25 * 10**8
    with pytest.raises(BlockNotFound):
        node.block_hash(257)
    with pytest.raises(BlockNotFound):
        node.block(b"\x01" * 32)
    with pytest.raises(BlockNotFound):
        node.header_by_hash(b"\x01" * 32)


def test_witness_commitment_only_with_witness_data(regtest_node):
    node = regtest_node
    node.mine(1)
    plain = Block.parse(node.block(node.tip().block_hash))
    assert witness_commitment(plain.txs[0]) is None
    txid = node.faucet(OTHER, 50_000)          # a P2WPKH spend: witness data
    (block_hash,) = node.mine(1)
    block = Block.parse(node.block(block_hash))
    assert block.txids()[1] == txid and block.has_witness()
    coinbase = block.txs[0]
    assert witness_reserved_value(coinbase) == b"\x00" * 32
    assert witness_commitment(coinbase) == commitment_for(merkle_root(block.wtxids()), b"\x00" * 32)


def test_duplicate_submission_is_idempotent(regtest_node):
    node = regtest_node
    (h,) = node.mine(1)
    assert node.submit_block(node.block(h)) == "active"
    assert node.tip().block_hash == h


def test_bad_coinbase_amount_rejected(regtest_node):
    node = regtest_node
    node.mine(5)
    before = node.tip()
    raw = node.build_block(coinbase_extra_value=1)
    with pytest.raises(BlockRejected) as err:
        node.submit_block(raw)
    assert err.value.reason == "consensus-invalid"
    assert_nothing_indexed(node, raw, before)
    # the kernel remembers the verdict
    with pytest.raises(BlockRejected) as err:
        node.submit_block(raw)
    assert err.value.reason == "duplicate-invalid"
    assert_nothing_indexed(node, raw, before)
    node.mine(1)
    assert node.tip().height == before.height + 1


def test_bad_merkle_root_rejected(regtest_node):
    node = regtest_node
    node.mine(1)
    txid = node.faucet(OTHER, 10_000)
    before = node.tip()
    good = node.build_block()
    block = Block.parse(good)
    assert txid in block.txids()
    # Tamper the header's Merkle root and grind a valid proof of work for it, so
    # only the root is wrong.
    header = grind(block.header._replace(merkle_root=bytes(32 * [0x42]), nonce=0))
    bad = header.serialize() + good[80:]
    with pytest.raises(BlockRejected) as err:
        node.submit_block(bad)
    assert err.value.reason == "mutated"
    assert_nothing_indexed(node, bad, before)
    assert node.tx_location(txid) is None and node.mempool_txids() == [txid]
    # A mutated block is not marked invalid: the genuine block still goes in.
    assert node.submit_block(good) == "active"
    assert node.tx_location(txid)[:2] == (block.hash, before.height + 1)


def test_double_spend_inside_a_block_rejected(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    coin_txid, value = coinbase_outpoint(node, 1)
    spend_a = KEY.spend([(coin_txid, 0, value)], [(value - 1000, OTHER)])
    spend_b = KEY.spend([(coin_txid, 0, value)], [(value - 2000, KEY.script_pubkey)])
    before = node.tip()
    raw = node.build_block([spend_a, spend_b])
    with pytest.raises(BlockRejected) as err:
        node.submit_block(raw)
    assert err.value.reason == "consensus-invalid"
    assert_nothing_indexed(node, raw, before)
    assert node.utxo(coin_txid, 0).value == value
    assert node.outspend(coin_txid, 0) is None
    # each spend alone is fine
    assert node.submit_block(node.build_block([spend_a])) == "active"
    assert node.outspend(coin_txid, 0) == Block.parse(node.block(node.tip().block_hash)).txids()[1]


def test_malformed_and_orphan_blocks_rejected(regtest_node):
    node = regtest_node
    node.mine(2)
    before = node.tip()
    for garbage, reason in ((b"", "block-decode-failed"), (b"\x00" * 81, "invalid-header"),
                            (b"not a block at all" * 10, "block-decode-failed")):
        with pytest.raises(BlockRejected) as err:
            node.submit_block(garbage)
        assert err.value.reason == reason
    raw = node.build_block()
    with pytest.raises(BlockRejected) as err:
        node.submit_block(raw[:-1])
    assert err.value.reason == "block-decode-failed"
    orphan = grind(BlockHeader.parse(raw[:80])._replace(prev_hash=b"\x13" * 32, nonce=0))
    with pytest.raises(BlockRejected) as err:
        node.submit_block(orphan.serialize() + raw[80:])
    assert err.value.reason == "prev-blk-not-found"
    with pytest.raises(BlockRejected) as err:
        node.submit_block(node.build_block(time=int(time.time()) + 3 * 3600))
    assert err.value.reason == "time-too-new"
    with pytest.raises(BlockRejected) as err:          # not after the median time past
        node.submit_block(node.build_block(time=BlockHeader.parse(node.header(1)).time - 1))
    assert err.value.reason == "invalid-header"
    assert node.tip() == before
    assert node.submit_block(raw) == "active"

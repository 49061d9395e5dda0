"""Reorgs: the index, the outspend index, the UTXO set and the mempool follow the kernel's active chain."""
from __future__ import annotations

import pytest

from milagro_tls.chain.block import Block
from milagro_tls.chain.errors import BlockRejected
from milagro_tls.chain.script_text import is_unspendable
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.tx import is_coinbase, parse_tx
from helpers.nodes import coinbase_coin

KEY = P2wpkhKey(bytes([11]) * 32)
OTHER = b"\x00\x14" + b"\x44" * 20
FEE = 1_000


def assert_index_matches_chain(node):
    """Replay the active chain from its raw blocks and compare with what the node answers."""
    created, spent_by = {}, {}
    for height in range(1, node.tip().height + 1):
        block = Block.parse(node.block(node.block_hash(height)))
        for pos, (txid, tx) in enumerate(zip(block.txids(), block.txs)):
            assert node.tx_location(txid) == (block.hash, height, pos)
            if not is_coinbase(tx):
                for inp in tx.vin:
                    spent_by[(inp.txid[::-1], inp.vout)] = txid
            for vout, out in enumerate(tx.vout):
                if not is_unspendable(out.script_pubkey.data):
                    created[(txid, vout)] = (out.value, height)
    for (txid, vout), (value, height) in created.items():
        utxo = node.utxo(txid, vout, include_mempool=False)
        if (txid, vout) in spent_by:
            assert utxo is None and node.outspend(txid, vout) == spent_by[(txid, vout)]
        else:
            assert (utxo.value, utxo.height) == (value, height)


def side_branch(node, parent, n, txs=None):
    """n blocks on ``parent`` (``txs`` in the first); lazily, as each needs its parent known."""
    for i in range(n):
        raw = node.build_block(txs if i == 0 and txs else [], parent=parent)
        parent = Block.parse(raw).hash
        yield raw


def test_reorg_removes_transaction_and_remining_restores_it(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    fork_hash = node.tip().block_hash
    coin = coinbase_coin(node, 1)
    txid = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, OTHER)]))
    (mined,) = node.mine(1)
    orphaned_coinbase = Block.parse(node.block(mined)).txids()[0]
    assert node.tx_location(txid) == (mined, 102, 1)
    assert_index_matches_chain(node)

    branch = side_branch(node, fork_hash, 2)
    assert node.submit_block(next(branch)) == "side"       # equal work: the first seen stays
    assert node.tip().block_hash == mined and node.tx_location(txid)[0] == mined
    second = next(branch)
    assert node.submit_block(second) == "active"           # more work: reorg
    assert node.tip().height == 103 and node.tip().block_hash == Block.parse(second).hash
    assert node.height_of(mined) is None
    # the transaction left the index and went back to the mempool
    assert node.tx_location(txid) is None
    assert node.mempool_txids() == [txid]
    assert node.tx_status(txid).block_hash is None
    assert node.tx_location(orphaned_coinbase) is None and node.utxo(orphaned_coinbase, 0) is None
    assert node.utxo(coin[0], 0, include_mempool=False).value == coin[2]   # the coin is back
    assert node.outspend(coin[0], 0) == txid                               # spent by the mempool only
    assert node.utxo(txid, 0, include_mempool=False) is None
    assert node.utxo(txid, 0).height is None
    assert_index_matches_chain(node)
    # the stale block stays readable
    assert Block.parse(node.block(mined)).txids()[1] == txid

    (remined,) = node.mine(1)
    assert node.tx_location(txid) == (remined, 104, 1)
    assert node.mempool_txids() == []
    assert node.utxo(txid, 0, include_mempool=False).height == 104
    assert_index_matches_chain(node)


def test_reorg_to_a_conflicting_spend(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    fork_hash = node.tip().block_hash
    coin = coinbase_coin(node, 1)
    ours = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, OTHER)]))
    node.mine(1)
    rival_raw = KEY.spend([coin], [(coin[2] - 5 * FEE, KEY.script_pubkey)])
    rival = parse_tx(rival_raw).hash()
    statuses = [node.submit_block(raw) for raw in side_branch(node, fork_hash, 2, [rival_raw])]
    assert statuses == ["side", "active"]
    assert node.tx_location(rival)[1] == 102
    assert node.tx_location(ours) is None and ours not in node.mempool_txids()
    assert node.outspend(coin[0], 0) == rival
    assert_index_matches_chain(node)


def test_reorg_returns_parent_before_its_mempool_child(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    fork_hash = node.tip().block_hash
    (mined,) = node.mine(1, script_pubkey=KEY.script_pubkey)
    coin = coinbase_coin(node, 2)
    parent = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)]))
    node.mine(1)
    child = node.submit_tx(KEY.spend([(parent, 0, coin[2] - FEE)], [(coin[2] - 2 * FEE, OTHER)]))
    for raw in side_branch(node, fork_hash, 3):
        node.submit_block(raw)
    assert node.height_of(mined) is None and node.tip().height == 104
    # parent is back in the mempool and its child stays valid after it
    assert node.mempool_txids() == [parent, child]
    assert_index_matches_chain(node)


def test_reorg_drops_mempool_children_of_a_conflicted_transaction(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    fork_hash = node.tip().block_hash
    coin = coinbase_coin(node, 1)
    parent = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)]))
    node.mine(1)
    child = node.submit_tx(KEY.spend([(parent, 0, coin[2] - FEE)], [(coin[2] - 2 * FEE, OTHER)]))
    rival = KEY.spend([coin], [(coin[2] - 3 * FEE, OTHER)])
    for raw in side_branch(node, fork_hash, 2, [rival]):
        node.submit_block(raw)
    assert node.tx_location(parse_tx(rival).hash())[1] == 102
    assert node.mempool_txids() == []
    assert node.outspend(parent, 0) is None and node.utxo(parent, 0) is None
    assert node.tx_location(parent) is None and node.tx_location(child) is None
    assert_index_matches_chain(node)


def test_side_branch_with_invalid_block_leaves_active_chain(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    fork_hash = node.tip().block_hash
    coin = coinbase_coin(node, 1)
    txid = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, OTHER)]))
    node.mine(1)
    tip = node.tip()
    first = node.build_block([], parent=fork_hash)
    assert node.submit_block(first) == "side"
    bad = node.build_block([], parent=Block.parse(first).hash, coinbase_extra_value=1)
    with pytest.raises(BlockRejected):
        node.submit_block(bad)                              # more work, but invalid when connected
    assert node.tip() == tip
    assert node.tx_location(txid)[1] == 102
    assert node.height_of(Block.parse(bad).hash) is None
    assert_index_matches_chain(node)

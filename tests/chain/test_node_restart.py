"""Restarts: the node's state survives close/open, a crash, and a lost or stale index."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import DataDirLocked, NodeError, TxRejected
from milagro_tls.chain.node import RegtestNode
from milagro_tls.chain.node.store import Store
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.tx import parse_tx

KEY = P2wpkhKey(bytes([13]) * 32)
OTHER = b"\x00\x14" + b"\x55" * 20


def snapshot(node, txids):
    return (node.tip(), node.mempool_txids(), node.miner_script_pubkey,
            [node.tx_location(t) for t in txids], [node.utxo(t, 0) for t in txids],
            [node.outspend(t, 0) for t in txids])


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_state_survives_close_and_open(tmp_path):
    datadir = tmp_path / "node"
    with RegtestNode.open(datadir) as node:
        confirmed = node.faucet(OTHER, 40_000)
        node.mine(1)
        pending = node.faucet(OTHER, 50_000)
        before = snapshot(node, [confirmed, pending])
        raw_pending = node.transaction(pending)
    key_file = datadir / "miner.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with RegtestNode.open(datadir) as node:
        assert snapshot(node, [confirmed, pending]) == before
        assert node.transaction(pending) == raw_pending
        node.mine(1)
        assert node.tx_location(pending)[1] == before[0].height + 1
    with pytest.raises(NodeError):
        node.tip()                                     # closed


def test_second_open_is_refused(tmp_path):
    datadir = tmp_path / "node"
    with RegtestNode.open(datadir):
        with pytest.raises(DataDirLocked):
            RegtestNode.open(datadir)                 # another open file description, same process
        result = run_python(f"""
            from milagro_tls.chain.node import RegtestNode
            from milagro_tls.chain.errors import DataDirLocked
            try:
                RegtestNode.open({str(datadir)!r})
            except DataDirLocked:
                print("locked")
        """)
        assert result.stdout.strip() == "locked", result.stderr
    # released on close
    with RegtestNode.open(datadir) as node:
        assert node.tip().height == 0


def test_crash_without_close_keeps_everything(tmp_path):
    """The kernel persists only on a clean shutdown; the node replays its own copy."""
    datadir = tmp_path / "node"
    result = run_python(f"""
        import os
        from milagro_tls.chain.node import RegtestNode
        node = RegtestNode.open({str(datadir)!r})
        node.mine(120)
        txid = node.faucet(bytes.fromhex({OTHER.hex()!r}), 70_000)
        print(node.tip().height, node.tip().block_hash.hex(), txid.hex(), flush=True)
        os._exit(0)                                   # no close(), no atexit
    """)
    height, tip_hash, txid = result.stdout.split()
    with RegtestNode.open(datadir) as node:
        assert node.tip().height == int(height) and node.tip().block_hash.hex() == tip_hash
        assert node.mempool_txids() == [bytes.fromhex(txid)]
        node.mine(1)
        assert node.tx_location(bytes.fromhex(txid))[1] == int(height) + 1


def test_exit_without_close_flushes_at_exit(tmp_path):
    datadir = tmp_path / "node"
    run_python(f"""
        from milagro_tls.chain.node import RegtestNode
        RegtestNode.open({str(datadir)!r}).mine(7)
    """)
    with RegtestNode.open(datadir) as node:
        assert node.tip().height == 7


def test_index_behind_the_kernel_is_repaired(tmp_path):
    """A crash between the kernel's acceptance and the index commit: the index catches up."""
    datadir = tmp_path / "node"
    with RegtestNode.open(datadir) as node:
        node.mine(101, script_pubkey=KEY.script_pubkey)
        txid = node.faucet(OTHER, 10_000)
        node.mine(3)
        before = snapshot(node, [txid])
    store = Store(datadir / "index.sqlite")
    with store.transaction():
        for _ in range(4):
            store.disconnect_tip()
    store.close()
    with RegtestNode.open(datadir) as node:
        assert snapshot(node, [txid]) == before


def test_lost_index_is_rebuilt_from_the_kernel(tmp_path):
    datadir = tmp_path / "node"
    with RegtestNode.open(datadir) as node:
        txid = node.faucet(OTHER, 10_000)
        node.mine(2)
        before = snapshot(node, [txid])
    for name in os.listdir(datadir):
        if name.startswith("index.sqlite"):
            os.remove(datadir / name)
    with RegtestNode.open(datadir) as node:
        assert snapshot(node, [txid]) == before


def test_embedded_source_over_the_node(tmp_path):
    with EmbeddedSource.open(tmp_path / "node") as source:
        txid = source.node.faucet(OTHER, 20_000)
        assert source.tx_status(txid).block_hash is None
        (block_hash,) = source.node.mine(1)
        tip = source.tip()
        assert tip.block_hash == block_hash
        assert source.headers(tip.height - 1, 5) == [source.header(tip.height - 1), source.header(tip.height)]
        assert source.tx_status(txid).height == tip.height
        assert source.transaction(txid, block_hash) == source.transaction(txid)
        assert source.block(block_hash)[:80] == source.header(tip.height)
        assert source.outspend_unverified(txid, 0) is None
        spent = parse_tx(source.transaction(txid)).vin[0]
        assert source.outspend_unverified(spent.txid[::-1], spent.vout) == txid
        with pytest.raises(TxRejected) as err:
            source.broadcast(source.transaction(txid))
        assert err.value.reason == "txn-already-known"


def test_index_damaged_while_running_is_rebuilt(regtest_node):
    node = regtest_node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    coinbase = Block.parse(node.block(node.block_hash(1))).txs[0]
    coin = (coinbase.hash(), 0, coinbase.vout[0].value)
    txid = node.submit_tx(KEY.spend([coin], [(coin[2] - 1_000, OTHER)]))
    node._store._db.execute("DELETE FROM utxo")        # simulated damage: the UTXO set is gone
    (block_hash,) = node.mine(1)                        # connecting it finds the coin missing
    assert node.tip().block_hash == block_hash and node.tx_location(txid)[0] == block_hash
    assert node.utxo(txid, 0).value == coin[2] - 1_000
    assert node.utxo(Block.parse(node.block(node.block_hash(2))).txids()[0], 0) is not None


def test_diverged_index_at_open_is_rebuilt_and_keeps_the_mempool(tmp_path):
    """The index lags the kernel and lacks a coin the next block spends: open rebuilds it
    from the kernel's blocks and re-admits the persisted mempool."""
    datadir = tmp_path / "node"
    with RegtestNode.open(datadir) as node:
        node.mine(101, script_pubkey=KEY.script_pubkey)
        coins = [Block.parse(node.block(node.block_hash(h))).txs[0] for h in (1, 2)]
        coins = [(cb.hash(), 0, cb.vout[0].value) for cb in coins]
        spend = node.submit_tx(KEY.spend([coins[0]], [(coins[0][2] - 1_000, OTHER)]))
        node.mine(1)
        pending = node.submit_tx(KEY.spend([coins[1]], [(coins[1][2] - 1_000, OTHER)]))
        before = snapshot(node, [spend, pending])
    store = Store(datadir / "index.sqlite")
    with store.transaction():
        store.disconnect_tip()
        store._db.execute("DELETE FROM utxo WHERE txid = ?", (coins[0][0],))
    store.close()
    with RegtestNode.open(datadir) as node:
        assert snapshot(node, [spend, pending]) == before
        assert node.mempool_txids() == [pending] and node.outspend(coins[0][0], 0) == spend

"""The node's mempool: only what the kernel's script check accepts, first spend wins, clear errors."""
from __future__ import annotations

import os

import pytest
from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from milagro_tls.chain.block import Block
from milagro_tls.chain.errors import BlockRejected, TxNotFound, TxRejected
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.tx import parse_tx
from helpers.nodes import coinbase_coin

KEY = P2wpkhKey(bytes([9]) * 32)
OTHER = b"\x00\x14" + b"\x33" * 20
FEE = 1_000


@pytest.fixture
def funded(regtest_node):
    """101 blocks paying KEY: the coinbases at heights 1 and 2 are spendable in block 102."""
    regtest_node.mine(101, script_pubkey=KEY.script_pubkey)
    return regtest_node


def rejected(node, raw) -> str:
    with pytest.raises(TxRejected) as err:
        node.submit_tx(raw)
    return err.value.reason


def test_valid_p2wpkh_spend_accepted_then_mined(funded):
    node = funded
    coin = coinbase_coin(node, 1)
    raw = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    assert node.test_tx(raw) == parse_tx(raw).hash() and node.mempool_txids() == []
    txid = node.submit_tx(raw)
    assert node.mempool_txids() == [txid]
    assert node.transaction(txid) == raw
    status = node.tx_status(txid)
    assert status.block_hash is None and status.height is None
    assert node.outspend(coin[0], 0) == txid
    assert node.utxo(coin[0], 0) is None                      # spent in the mempool
    assert node.utxo(coin[0], 0, include_mempool=False).value == coin[2]
    mempool_out = node.utxo(txid, 0)
    assert mempool_out.height is None and mempool_out.value == coin[2] - FEE
    assert node.utxo(txid, 0, include_mempool=False) is None
    (block_hash,) = node.mine(1)
    assert node.mempool_txids() == []
    assert node.tx_location(txid) == (block_hash, 102, 1)
    assert node.tx_status(txid).height == 102
    coinbase = Block.parse(node.block(block_hash)).txs[0]
    assert coinbase.vout[0].value == 50 * 10**8 + FEE               # subsidy + fees
    assert node.utxo(txid, 0).height == 102 and node.outspend(coin[0], 0) == txid
    assert node.transaction(txid) == raw and node.transaction(txid, block_hash) == raw
    with pytest.raises(TxNotFound):
        node.transaction(b"\x00" * 32)


def test_double_spend_rejected(funded):
    node = funded
    coin = coinbase_coin(node, 1)
    first = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, OTHER)]))
    # no replacement, even at a higher fee
    assert rejected(node, KEY.spend([coin], [(coin[2] - 10 * FEE, KEY.script_pubkey)])) == "txn-mempool-conflict"
    assert node.mempool_txids() == [first]
    node.mine(1)
    assert rejected(node, KEY.spend([coin], [(coin[2] - 2 * FEE, OTHER)])) == "bad-txns-inputs-missingorspent"
    assert rejected(node, node.transaction(first)) == "txn-already-known"


def test_bad_signatures_rejected(funded):
    node = funded
    coin = coinbase_coin(node, 1)
    good = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    tx = parse_tx(good)
    sig = bytearray(tx.vin[0].witness.items[0])
    sig[10] ^= 0x01
    tx.vin[0].witness = Witness([bytes(sig), tx.vin[0].witness.items[1]])
    assert rejected(node, tx.serialize()) == "mandatory-script-verify-flag-failed"
    # a signature over the wrong amount (BIP143 commits to it)
    wrong_amount = KEY.spend([(coin[0], 0, coin[2] + 1)], [(coin[2] - FEE, OTHER)])
    assert rejected(node, wrong_amount) == "mandatory-script-verify-flag-failed"
    # someone else's key
    thief = P2wpkhKey(bytes([10]) * 32)
    assert rejected(node, thief.spend([coin], [(coin[2] - FEE, OTHER)])) == "mandatory-script-verify-flag-failed"
    assert node.mempool_txids() == []
    assert node.submit_tx(good)


def test_forged_taproot_keypath_rejected(funded):
    """Flags ALL: without TAPROOT a v1 output would be anyone-can-spend."""
    node = funded
    coin = coinbase_coin(node, 1)
    p2tr = b"\x51\x20" + KEY.pubkey[1:]
    fund = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, p2tr)]))
    forged = Transaction(2, [TransactionInput(fund[::-1], 0, witness=Witness([os.urandom(64)]))],
                         [TransactionOutput(coin[2] - 2 * FEE, Script(OTHER))], 0)
    assert rejected(node, forged.serialize()) == "mandatory-script-verify-flag-failed"


@pytest.mark.parametrize("garbage", [
    b"", b"\x00", b"garbage bytes", os.urandom(200), b"\x02\x00\x00\x00" + b"\xff" * 9,
])
def test_garbage_rejected_node_keeps_working(funded, garbage):
    node = funded
    assert rejected(node, garbage) == "tx-decode-failed"
    coin = coinbase_coin(node, 1)
    good = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    assert rejected(node, good[:-1]) == "tx-decode-failed"         # truncated
    assert rejected(node, good + b"\x00") == "tx-decode-failed"    # trailing byte
    assert rejected(node, "not bytes") == "tx-decode-failed"       # type: ignore[arg-type]
    txid = node.submit_tx(good)
    node.mine(1)
    assert node.tx_location(txid)[1] == 102


def test_structural_rejections(funded):
    node = funded
    coin = coinbase_coin(node, 1)
    assert rejected(node, KEY.spend([coin], [(coin[2] + 1, OTHER)])) == "bad-txns-in-belowout"
    assert rejected(node, KEY.spend([coin, coin], [(coin[2] - FEE, OTHER)])) == "bad-txns-inputs-duplicate"
    assert rejected(node, KEY.spend([coin], [])) == "bad-txns-vout-empty"
    assert rejected(node, KEY.spend([coin], [(21_000_001 * 10**8, OTHER)])) == "bad-txns-vout-toolarge"
    assert rejected(node, KEY.spend([(b"\x55" * 32, 0, 10**8)], [(10**7, OTHER)])) == "bad-txns-inputs-missingorspent"
    coinbase_raw = node.transaction(coin[0])
    assert rejected(node, coinbase_raw) == "coinbase"
    assert node.mempool_txids() == []


def test_immature_coinbase_rejected(funded):
    node = funded
    assert node.tip().height == 101
    coin2 = coinbase_coin(node, 2)          # 100 confirmations in the next block: mature
    coin3 = coinbase_coin(node, 3)          # 99: not yet
    premature = KEY.spend([coin3], [(coin3[2] - FEE, OTHER)])
    assert rejected(node, premature) == "bad-txns-premature-spend-of-coinbase"
    assert node.submit_tx(KEY.spend([coin2], [(coin2[2] - FEE, OTHER)]))
    node.mine(1)
    assert node.submit_tx(premature)


def test_locktime_and_relative_locktime(funded):
    node = funded
    tip = node.tip().height
    coin = coinbase_coin(node, 1)
    late = KEY.spend([coin], [(coin[2] - FEE, OTHER)], locktime=tip + 1, sequence=0xFFFFFFFE)
    assert rejected(node, late) == "non-final"
    parent = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)], locktime=tip,
                                      sequence=0xFFFFFFFE))
    # BIP68: one block of relative lock on an unconfirmed parent cannot be met yet
    child = KEY.spend([(parent, 0, coin[2] - FEE)], [(coin[2] - 2 * FEE, OTHER)], sequence=1)
    assert rejected(node, child) == "non-BIP68-final"
    node.mine(1)
    assert node.submit_tx(child)
    node.mine(1)
    assert node.tx_location(parse_tx(child).hash())[1] == tip + 2


def test_chain_of_unconfirmed_transactions_mined_in_order(funded):
    node = funded
    coin = coinbase_coin(node, 1)
    value = coin[2]
    txids, prev = [], coin
    for _ in range(5):
        value -= FEE
        raw = KEY.spend([prev], [(value, KEY.script_pubkey)])
        txids.append(node.submit_tx(raw))
        prev = (txids[-1], 0, value)
    assert node.mempool_txids() == txids
    assert node.outspend(txids[0], 0) == txids[1]
    assert node.utxo(txids[-1], 0).value == value and node.utxo(txids[0], 0) is None
    (block_hash,) = node.mine(1)
    assert Block.parse(node.block(block_hash)).txids()[1:] == txids
    assert [node.tx_location(t)[2] for t in txids] == [1, 2, 3, 4, 5]
    assert node.mempool_txids() == []


def test_faucet_pays_and_funds_itself(regtest_node):
    node = regtest_node
    txid = node.faucet(OTHER, 123_456)                # mines its own maturity blocks, no more
    assert node.tip().height == 100 and node.mempool_txids() == [txid]
    tx = parse_tx(node.transaction(txid))
    assert (tx.vout[0].value, tx.vout[0].script_pubkey.data) == (123_456, OTHER)
    # change chains: a second payment before any block
    second = node.faucet(OTHER, 654_321)
    assert set(node.mempool_txids()) == {txid, second}
    # More than the unconfirmed change: one more block matures the next coinbase (height 2).
    big = node.faucet(OTHER, 60 * 10**8)
    assert node.tip().height == 101 and node.mempool_txids() == [txid, second, big]
    assert len(parse_tx(node.transaction(big)).vin) == 2
    node.mine(1)
    assert node.tx_location(txid) and node.tx_location(second) and node.tx_location(big)
    assert node.utxo(second, 0).value == 654_321


def test_sigop_counting_matches_core():
    from milagro_tls.chain.node.sigops import count_sigops
    p2wpkh = b"\x00\x14" + b"\x01" * 20
    bare_multisig = b"\x51" + (b"\x21" + b"\x02" * 33) * 3 + b"\x53\xae"
    assert count_sigops(p2wpkh, False) == 0
    assert count_sigops(bare_multisig, False) == 20 and count_sigops(bare_multisig, True) == 3
    assert count_sigops(b"\xac\xad\x00\xae", True) == 22
    assert count_sigops(b"\x4c", True) == 0                    # truncated push: parsing stops
    assert count_sigops(b"\xac\x4c\x05\xac", True) == 1          # ... after what came before


def test_p2sh_and_witness_sigops_match_core():
    from embit.transaction import TransactionInput as In
    from milagro_tls.chain.hashes import hash160, sha256
    from milagro_tls.chain.node.sigops import sigop_cost
    from milagro_tls.chain.node.store import Utxo

    def cost(spk, script_sig=b"", witness=()):
        tx = Transaction(2, [In(b"\x01" * 32, 0, Script(script_sig), witness=Witness(list(witness)))],
                         [TransactionOutput(1, Script(OTHER))], 0)
        return sigop_cost(tx, [Utxo(2, spk, 1, False)])

    redeem = b"\x52" + (b"\x21" + b"\x02" * 33) * 3 + b"\x53\xae"       # 2-of-3: 3 sigops, accurately
    p2sh = b"\xa9\x14" + hash160(redeem) + b"\x87"
    assert cost(p2sh, b"\x00" + b"\x4c" + bytes([len(redeem)]) + redeem) == 3 * 4
    truncated = b"\x4c" + bytes([len(redeem)]) + redeem + b"\x4c\x05"
    assert cost(p2sh, truncated) == 0                                        # truncated: Core counts none
    assert cost(p2sh, b"\x61" + b"\x4c" + bytes([len(redeem)]) + redeem) == 0  # not push-only
    assert cost(b"\x00\x14" + b"\x01" * 20) == 1                               # P2WPKH
    assert cost(b"\x00\x20" + sha256(redeem), witness=[b"", redeem]) == 3      # P2WSH: unscaled
    nested = b"\x00\x14" + b"\x01" * 20
    wrapped = b"\xa9\x14" + hash160(nested) + b"\x87"
    assert cost(wrapped, bytes([len(nested)]) + nested) == 1                    # P2SH-P2WPKH
    assert cost(b"\x51\x20" + b"\x01" * 32, witness=[b"\x01" * 64]) == 0        # taproot: no sigops here


def test_sigop_limits_keep_blocks_valid(funded):
    node = funded
    coin = coinbase_coin(node, 1)
    heavy = b"\xac" * 3_900                                    # 3,900 legacy sigops = cost 15,600
    assert rejected(node, KEY.spend([coin], [(1_000, b"\xac" * 4_001), (coin[2] - FEE - 1_000, OTHER)])) \
        == "bad-txns-too-many-sigops"
    txids, prev, value = [], coin, coin[2]
    for _ in range(6):                                         # 6 x 15,600 > 80,000 per block
        value -= FEE + 1_000
        txids.append(node.submit_tx(KEY.spend([prev], [(value, KEY.script_pubkey), (1_000, heavy)])))
        prev = (txids[-1], 0, value)
    too_many = node.build_block([node.transaction(t) for t in txids])
    with pytest.raises(BlockRejected):                         # the limit is real...
        node.submit_block(too_many)
    (first,) = node.mine(1)                                    # ...and the miner keeps under it
    assert Block.parse(node.block(first)).txids()[1:] == txids[:5]
    assert node.mempool_txids() == txids[5:]
    node.mine(1)
    assert node.mempool_txids() == [] and node.tx_location(txids[5])[1] == 103


def test_concurrent_use_from_threads(funded):
    import threading
    node = funded
    coins = [coinbase_coin(node, h) for h in (1, 2)]
    errors, results = [], []

    def spender(coin):
        try:
            results.append(node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, OTHER)])))
        except Exception as exc:                               # pragma: no cover - reported below
            errors.append(exc)

    def miner():
        try:
            for _ in range(5):
                node.mine(1)
                node.tip(), node.mempool_txids()
        except Exception as exc:                               # pragma: no cover
            errors.append(exc)

    def reader():
        try:
            for _ in range(50):
                tip = node.tip()
                node.header_by_hash(tip.block_hash)
        except Exception as exc:                               # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=f, args=a) for f, a in
               [(spender, (coins[0],)), (spender, (coins[1],)), (miner, ()), (reader, ()), (reader, ())]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    node.mine(1)
    assert node.tip().height == 107 and all(node.tx_location(t) for t in results) and len(results) == 2


def test_sixty_four_byte_transactions_refused(funded):
    """A transaction under 65 bytes (without witness) could pose as an inner Merkle node."""
    node = funded
    coin = coinbase_coin(node, 1)
    small = Transaction(2, [TransactionInput(coin[0][::-1], 0)],
                        [TransactionOutput(coin[2] - FEE, Script(b"\x51\x51\x51\x51"))], 0)
    assert len(small.serialize()) == 64
    assert rejected(node, small.serialize()) == "tx-size-small"

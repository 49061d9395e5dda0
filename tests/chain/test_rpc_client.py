"""RpcSource: its response parsers on real Core bodies, and its answers against the chain server
compared with EmbeddedSource's on the very same node."""
from __future__ import annotations

import json
import socket
from decimal import Decimal

import pytest
from helpers.fixtures import fixture_path

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import BlockNotFound, SourceError, TxNotFound, TxRejected
from milagro_tls.chain.hashes import from_display_hex, sha256d
from milagro_tls.chain.network import Network
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.rpc_client import (
    RpcCallError, RpcSource, checked_block, checked_header, checked_tx, network_of_chain, sats, status_from_verbose,
    tip_from_chaininfo, translate_error, unwrap, utxo_from_gettxout)
from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.source import Tip
from milagro_tls.chain.spec import open_source
from milagro_tls.chain.tx import parse_tx, txid_of

KEY = P2wpkhKey(bytes([11]) * 32)
OTHER = b"\x00\x14" + b"\x77" * 20
FEE = 1_000


def load(*parts):
    return json.loads(fixture_path(*parts).read_text())


# --- parsing real bodies ---

def test_error_translation_on_real_bodies():
    envelope = load("rpc", "getblockhash_error_envelope.bitcoin-org.json")
    with pytest.raises(BlockNotFound):
        unwrap(envelope, "getblockhash", (-1,))
    rejected = translate_error("sendrawtransaction", ("00",), load("rpc", "regtest_sendrawtransaction_error.bitcoin-org.json"))
    assert isinstance(rejected, TxRejected) and rejected.reason == "TX rejected"
    assert isinstance(translate_error("getrawtransaction", ("ab",), {"code": -5, "message": "No such mempool or "
                                      "blockchain transaction. Use gettransaction for wallet transactions."}), TxNotFound)
    assert isinstance(translate_error("getblock", ("ab",), {"code": -5, "message": "Block not found"}), BlockNotFound)
    assert isinstance(translate_error("getrawtransaction", ("ab", 0, "cd"), {"code": -5, "message": "Block hash not found"}),
                      BlockNotFound)
    other = translate_error("getblockcount", (), {"code": -28, "message": "Loading block index..."})
    assert isinstance(other, RpcCallError) and isinstance(other, SourceError) and other.code == -28
    assert isinstance(translate_error("x", (), {"message": "no code"}), SourceError)
    with pytest.raises(SourceError):
        unwrap("not a reply", "x")
    assert unwrap({"result": None, "error": None, "id": 1}, "gettxout") is None


def test_result_parsers_on_real_bodies():
    info = load("rpc", "mainnet_getblockchaininfo.bitcoin-org.json")
    assert tip_from_chaininfo(info) == Tip(464562, from_display_hex(info["bestblockhash"]))
    assert network_of_chain(info["chain"]) is Network.MAINNET and network_of_chain("regtest") is Network.REGTEST
    with pytest.raises(SourceError):
        network_of_chain("liquidv1")
    for name in ("mainnet_getrawtransaction_verbose_52309405.bitcoin-org.json",
                 "mainnet_getrawtransaction_verbose_0d37522b.json"):
        body = load("rpc", name)
        txid = from_display_hex(body["txid"])
        assert txid_of(parse_tx(checked_tx(body["hex"], txid))) == txid
        assert status_from_verbose(body, txid) == (from_display_hex(body["blockhash"]), True)
        with pytest.raises(SourceError):
            checked_tx(body["hex"], b"\x01" * 32)
        with pytest.raises(SourceError):
            status_from_verbose(body, b"\x01" * 32)
    value, script, confirmations, coinbase = utxo_from_gettxout(
        json.loads(fixture_path("rpc", "testnet3_gettxout.bitcoin-org.json").read_text(), parse_float=Decimal))
    assert (value, script.hex(), confirmations, coinbase) == (
        100_000, "76a914a11418d3c144876258ba02909514d90e71ad844388ac", 0, False)
    block = load("rpc", "mainnet_getblock_951658.electrumx.json")
    block_hash = from_display_hex(block["hash"])
    assert checked_block(block["block"], block_hash) == fixture_path("blocks", "mainnet_951658.bin").read_bytes()
    assert sha256d(checked_header(block["block"][:160], block_hash)) == block_hash
    with pytest.raises(SourceError):
        checked_block(block["block"], from_display_hex(block["previousblockhash"]))
    assert sats("0.00000001") == 1 and sats(50) == 5_000_000_000
    with pytest.raises(SourceError):
        sats("0.000000001")


# --- against a running server ---

def coinbase_coin(node, height):
    block = Block.parse(node.block(node.block_hash(height)))
    return block.txids()[0], 0, block.txs[0].vout[0].value


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Coinbase 1 spent by tx_a (block 102); tx_a:0 spent by tx_b (mempool)."""
    server = ChainServer.open(tmp_path_factory.mktemp("rpc") / "chain").start()
    node = server.node
    node.mine(101, script_pubkey=KEY.script_pubkey)
    coin = coinbase_coin(node, 1)
    raw_a = KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)])
    tx_a = node.submit_tx(raw_a)
    (block,) = node.mine(1)
    raw_b = KEY.spend([(tx_a, 0, coin[2] - FEE)], [(coin[2] - 2 * FEE, OTHER)])
    tx_b = node.submit_tx(raw_b)
    rpc = RpcSource(server.url + "/", cookie_file=server.datadir / ".cookie")
    embedded = EmbeddedSource(node)                    # the same node, in process
    yield {"server": server, "node": node, "rpc": rpc, "emb": embedded, "block": block, "tx_a": tx_a,
           "tx_b": tx_b, "cb1": coin[0]}
    rpc.close()
    server.close()


def both(setup, fn):
    """Call fn on both sources; return the two answers, or the two exception types."""
    out = []
    for source in (setup["rpc"], setup["emb"]):
        try:
            out.append(fn(source))
        except Exception as exc:        # compare failures by class
            out.append(type(exc))
    return out


def test_same_answers_as_embedded(setup):
    node, s = setup["node"], setup
    a, b = both(s, lambda src: src.tip())
    assert a == b and a.height == 102
    assert s["rpc"].network is Network.REGTEST
    for h in (0, 1, 50, 102):
        a, b = both(s, lambda src: src.header(h))
        assert a == b and len(a) == 80
    a, b = both(s, lambda src: src.headers(0, 500))
    assert a == b and len(a) == 103
    assert both(s, lambda src: src.headers(100, 2)) == both(s, lambda src: [src.header(100), src.header(101)])
    assert s["rpc"].headers(103, 5) == []
    for block_hash in (s["block"], node.block_hash(0), node.block_hash(7)):
        a, b = both(s, lambda src: src.block(block_hash))
        assert a == b and sha256d(a[:80]) == block_hash
    for txid in (s["tx_a"], s["tx_b"], s["cb1"]):
        a, b = both(s, lambda src: src.transaction(txid))
        assert a == b and txid_of(parse_tx(a)) == txid
        assert both(s, lambda src: src.tx_status(txid))[0] == both(s, lambda src: src.tx_status(txid))[1]
    assert both(s, lambda src: src.transaction(s["tx_a"], s["block"]))[0] == node.transaction(s["tx_a"])
    a, b = both(s, lambda src: src.tx_status(s["tx_a"], s["block"]))
    assert a == b and a.height == 102 and a.block_hash == s["block"]
    a, b = both(s, lambda src: src.tx_status(s["tx_b"]))
    assert a == b and a.block_hash is None and a.height is None
    # spent on chain, spent in the mempool, unspent
    assert both(s, lambda src: src.outspend_unverified(s["cb1"], 0)) == [s["tx_a"]] * 2
    assert both(s, lambda src: src.outspend_unverified(s["tx_a"], 0)) == [s["tx_b"]] * 2
    assert both(s, lambda src: src.outspend_unverified(s["tx_b"], 0)) == [None, None]


def test_same_failures_as_embedded(setup):
    s = setup
    assert both(s, lambda src: src.header(103)) == [BlockNotFound, BlockNotFound]
    assert both(s, lambda src: src.header(-1)) == [BlockNotFound, BlockNotFound]
    assert both(s, lambda src: src.block(b"\x42" * 32)) == [BlockNotFound, BlockNotFound]
    assert both(s, lambda src: src.transaction(b"\x43" * 32)) == [TxNotFound, TxNotFound]
    assert both(s, lambda src: src.tx_status(b"\x43" * 32)) == [TxNotFound, TxNotFound]
    assert both(s, lambda src: src.transaction(s["tx_b"], s["block"])) == [TxNotFound, TxNotFound]
    assert both(s, lambda src: src.broadcast(b"\x00\x01")) == [TxRejected, TxRejected]
    missing = KEY.spend([(b"\x44" * 32, 0, 10**8)], [(10**8 - FEE, OTHER)])
    assert both(s, lambda src: src.broadcast(missing)) == [TxRejected, TxRejected]
    with pytest.raises(TxRejected) as err:
        s["rpc"].broadcast(missing)
    assert err.value.reason == "bad-txns-inputs-missingorspent"


def test_outspend_without_milagro_methods(setup):
    """Against a plain bitcoind only the mempool spender can be named; a chain spend is said to be unknown."""
    rpc = RpcSource(setup["server"].url + "/", cookie_file=setup["server"].datadir / ".cookie")
    rpc._has_milagro = False
    try:
        assert rpc.outspend_unverified(setup["tx_a"], 0) == setup["tx_b"]
        assert rpc.outspend_unverified(setup["tx_b"], 0) is None
        with pytest.raises(SourceError, match="spent or does not exist"):
            rpc.outspend_unverified(setup["cb1"], 0)
    finally:
        rpc.close()


def test_writes_through_rpc(tmp_path):
    with ChainServer.open(tmp_path / "w").start() as server:
        rpc = RpcSource(server.url + "/", cookie_file=tmp_path / "w" / ".cookie")
        emb = EmbeddedSource(server.node)
        assert len(rpc.mine(3)) == 3 and emb.tip().height == 3
        (to_other,) = rpc.mine(1, OTHER)
        assert Block.parse(emb.block(to_other)).txs[0].vout[0].script_pubkey.data == OTHER
        txid = rpc.faucet(OTHER, 25_000)                    # mines its own maturity blocks
        assert rpc.mempool_txids() == [txid] and rpc.tx_status(txid).block_hash is None
        rpc.mine(1)
        assert emb.tx_status(txid).height == rpc.tip().height
        spent = parse_tx(emb.transaction(txid)).vin[0]
        server.node.mine(101, KEY.script_pubkey)
        coin = coinbase_coin(server.node, rpc.tip().height - 100)
        raw = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
        assert rpc.broadcast(raw) == txid_of(parse_tx(raw)) and rpc.mempool_txids() == [txid_of(parse_tx(raw))]
        assert rpc.outspend_unverified(spent.txid[::-1], spent.vout) == txid
        assert rpc.generatetoaddress(1, "bcrt1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3lgth6c")
        rpc.close()


def test_batch_and_generic_call(setup):
    rpc = setup["rpc"]
    assert rpc.call("getblockcount") == 102
    assert rpc.batch([("getblockcount", ()), ("getblockhash", (0,))])[0] == 102
    assert rpc.batch([]) == []
    with pytest.raises(RpcCallError) as err:
        rpc.call("nosuchmethod")
    assert err.value.code == -32601
    with pytest.raises(BlockNotFound):
        rpc.batch([("getblockcount", ()), ("getblockhash", (999,))])


def test_auth_and_transport_failures(setup):
    server = setup["server"]
    wrong = RpcSource(server.url + "/", ("__cookie__", "wrong"))
    with pytest.raises(SourceError, match="refused the credentials"):
        wrong.tip()
    wrong.close()
    # A stale password is retried once with the cookie file re-read (the server restarted).
    stale = RpcSource(server.url + "/", ("__cookie__", "old"), cookie_file=server.datadir / ".cookie")
    assert stale.tip().height == 102
    stale.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    gone = RpcSource(f"http://127.0.0.1:{free_port}/", ("u", "p"), timeout=2)
    with pytest.raises(SourceError, match="unreachable"):
        gone.tip()
    gone.close()
    not_rpc = RpcSource(server.url + "/blocks/tip/height", ("u", "p"))
    with pytest.raises(SourceError):
        not_rpc.call("getblockcount")
    not_rpc.close()
    with pytest.raises(SourceError, match="cannot read RPC cookie"):
        RpcSource(server.url + "/", cookie_file=server.datadir / "missing-cookie")


def test_bitcoind_spec_against_our_server(setup):
    server = setup["server"]
    user, _, password = (server.datadir / ".cookie").read_text().partition(":")
    with open_source(f"bitcoind://{user}:{password}@127.0.0.1:{server.port}") as source:
        assert isinstance(source, RpcSource) and source.tip() == setup["emb"].tip()
    with open_source(f"bitcoind://127.0.0.1:{server.port}?cookie={server.datadir / '.cookie'}") as source:
        assert source.header(5) == setup["node"].header(5)
    for bad in ("bitcoind://127.0.0.1", "bitcoind://127.0.0.1:1", "esplora+https://x", "file:///x", "regtest://", 42):
        with pytest.raises(ValueError):
            open_source(bad)
    with pytest.raises(ValueError, match="regtest://DIR"):
        open_source("esplora+https://blockstream.info/api")


def test_side_branch_status_matches_embedded(tmp_path):
    with ChainServer.open(tmp_path / "side").start() as server:
        node = server.node
        node.mine(101, KEY.script_pubkey)
        coin = coinbase_coin(node, 1)
        spend = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
        node.submit_tx(spend)
        node.mine(1)
        side = node.build_block([spend], parent=node.block_hash(101), script_pubkey=OTHER)
        assert node.submit_block(side) == "side"
        side_hash, txid = sha256d(side[:80]), txid_of(parse_tx(spend))
        rpc = RpcSource(server.url + "/", cookie_file=server.datadir / ".cookie")
        s = {"rpc": rpc, "emb": EmbeddedSource(node)}
        a, b = both(s, lambda src: src.tx_status(txid, side_hash))
        assert a == b and a.block_hash == side_hash and a.height is None
        a, b = both(s, lambda src: src.block(side_hash))
        assert a == b == side
        assert both(s, lambda src: src.transaction(txid, side_hash)) == [spend, spend]
        rpc.close()

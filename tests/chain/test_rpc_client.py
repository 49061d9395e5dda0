"""RpcSource: its response parsers on real Core bodies, and its answers against the chain server
compared with EmbeddedSource's on the very same node."""
from __future__ import annotations

import asyncio
import json
import socket
import time
from decimal import Decimal

import httpx
import pytest
from helpers.fixtures import fixture_path

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import BlockNotFound, SourceError, TxNotFound, TxRejected
from milagro_tls.chain.hashes import from_display_hex, sha256d
from milagro_tls.chain.network import Network
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain import rpc_steps
from milagro_tls.chain.rpc_client import AsyncRpcSource, RpcSource
from milagro_tls.chain.rpc_parse import (
    RpcCallError, fee_rate_from_estimate, network_of_chain, sats, status_from_verbose, tip_from_chaininfo,
    translate_error, unspents_from_scan, unwrap)
from milagro_tls.chain.script_text import address, descriptor
from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.source import Tip
from milagro_tls.chain.spec import datadir_cookie, open_async_source, open_source
from milagro_tls.chain.errors import SourceUnavailable
from milagro_tls.chain.transport import NO_RETRY, RetryPolicy, checked_block, checked_header, checked_tx
from milagro_tls.chain.tx import parse_tx, txid_of
from helpers.nodes import coinbase_coin

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
        assert txid_of(parse_tx(checked_tx(bytes.fromhex(body["hex"]), txid))) == txid
        assert status_from_verbose(body, txid) == (from_display_hex(body["blockhash"]), True)
        with pytest.raises(SourceError):
            checked_tx(bytes.fromhex(body["hex"]), b"\x01" * 32)
        with pytest.raises(SourceError):
            status_from_verbose(body, b"\x01" * 32)
    block = load("rpc", "mainnet_getblock_951658.electrumx.json")
    block_hash = from_display_hex(block["hash"])
    raw_block = bytes.fromhex(block["block"])
    assert checked_block(raw_block, block_hash) == fixture_path("blocks", "mainnet_951658.bin").read_bytes()
    assert sha256d(checked_header(raw_block[:80], block_hash)) == block_hash
    for wrong in (lambda: checked_block(raw_block, from_display_hex(block["previousblockhash"])),
                  lambda: checked_block(raw_block[:80], block_hash), lambda: checked_header(raw_block[:81], block_hash)):
        with pytest.raises(SourceError):
            wrong()
    assert sats("0.00000001") == 1 and sats(50) == 5_000_000_000
    with pytest.raises(SourceError):
        sats("0.000000001")


# --- against a running server ---

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
        assert len(rpc.call("generatetoaddress", 1, "bcrt1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3lgth6c")) == 1
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


def test_a_batch_answered_with_one_reply_is_refused():
    """A server that answers a batch with a single object (not the list JSON-RPC requires)
    must not pass for a shorter batch: the headers read would silently stop there."""
    def one_reply(request):
        return httpx.Response(200, json={"result": "00" * 32, "error": None, "id": 1})

    with mock_rpc(one_reply) as source:
        with pytest.raises(SourceError, match="one reply"):
            source.batch([("getblockhash", (0,)), ("getblockhash", (1,))])


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
    for bad in ("bitcoind://127.0.0.1", "bitcoind://127.0.0.1:1", "esplora+ftp://x", "esplora+https://x?net=main",
                "esplora+https://x?network=liquid", "bitcoind://127.0.0.1:1?cookie=c&chain=doge", "file:///x",
                "regtest://", 42):
        with pytest.raises(ValueError):
            open_source(bad)
    with pytest.raises(ValueError, match="regtest://DIR"):
        open_source("electrum://blockstream.info:50002")


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


# --- retries, timeouts, -txindex, and the wallet calls (stand-ins only for what cannot run here) ---

FAST = RetryPolicy(tries=3, base_delay=0.04, max_delay=1.0)
TX_52309405 = "rpc/mainnet_getrawtransaction_verbose_52309405.bitcoin-org.json"


def rpc_reply(request: httpx.Request, result=None, error=None, status=200) -> httpx.Response:
    """A JSON-RPC 1.0 reply to ``request``, as Core frames it (errors with HTTP 500)."""
    body = json.loads(request.content)
    return httpx.Response(status if error is None else 500,
                          json={"result": result, "error": error, "id": body["id"]})


def mock_rpc(handler, **kw) -> RpcSource:
    return RpcSource("http://bitcoind.test:8332/", ("u", "p"), transport=httpx.MockTransport(handler),
                     retry=kw.pop("retry", FAST), **kw)


def test_real_core_bodies_through_rpc_source():
    """getblockchaininfo, getrawtransaction and getblock bodies of Bitcoin Core, fed through RpcSource."""
    info = load("rpc", "mainnet_getblockchaininfo.bitcoin-org.json")
    tx = json.loads(fixture_path(*TX_52309405.split("/")).read_text(), parse_float=Decimal)
    block = load("rpc", "mainnet_getblock_951658.electrumx.json")

    def handler(request):
        method, params = json.loads(request.content)["method"], json.loads(request.content)["params"]
        if method == "getblockchaininfo":
            return rpc_reply(request, info)
        if method == "getrawtransaction":
            return rpc_reply(request, tx["hex"] if params[1] == 0 else json.loads(
                fixture_path(*TX_52309405.split("/")).read_text()))
        if method == "getblock" and params == [block["hash"], 0]:
            return rpc_reply(request, block["block"])
        return rpc_reply(request, error={"code": -5, "message": "Block not found"})

    with mock_rpc(handler) as source:
        assert source.network is Network.MAINNET
        assert source.tip() == Tip(464562, from_display_hex(info["bestblockhash"]))
        txid = from_display_hex(tx["txid"])
        assert txid_of(parse_tx(source.transaction(txid))) == txid
        raw_block = source.block(from_display_hex(block["hash"]))
        assert raw_block == fixture_path("blocks", "mainnet_951658.bin").read_bytes()
        with pytest.raises(BlockNotFound):
            source.block(from_display_hex(block["previousblockhash"]))
        with pytest.raises(SourceError, match="does not parse to that txid"):
            source.transaction(b"\x01" * 32)         # the handler answers with 52309405's hex
    with mock_rpc(handler, network=Network.TESTNET4) as source:
        with pytest.raises(SourceError, match="serves mainnet, not testnet4"):
            source.network


def test_node_without_txindex_is_told_to_pass_the_block_hash():
    """Core's -5 for getrawtransaction without -txindex and without a block hash."""
    tx = load(*TX_52309405.split("/"))

    def handler(request):
        params = json.loads(request.content)["params"]
        if len(params) == 3 and params[2] == tx["blockhash"]:
            return rpc_reply(request, tx["hex"])
        if len(params) == 3:
            return rpc_reply(request, error={"code": -5, "message": "No such transaction found in the provided "
                                             "block. Use gettransaction for wallet transactions."})
        return rpc_reply(request, error={"code": -5, "message": "No such mempool transaction. Use -txindex or "
                                         "provide a block hash to enable blockchain transaction queries. Use "
                                         "gettransaction for wallet transactions."})

    txid = from_display_hex(tx["txid"])
    with mock_rpc(handler) as source:
        with pytest.raises(TxNotFound, match="node lacks -txindex: pass the locator's block hash"):
            source.transaction(txid)
        assert txid_of(parse_tx(source.transaction(txid, from_display_hex(tx["blockhash"])))) == txid
        with pytest.raises(TxNotFound, match="No such transaction found in the provided block"):
            source.transaction(txid, b"\x02" * 32)


def test_busy_node_is_retried_with_growing_jittered_waits():
    """Core answers HTTP 503 "Work queue depth exceeded" when its RPC threads are all busy."""
    seen = []

    def handler(request):
        seen.append(time.monotonic())
        if len(seen) < 3:
            return httpx.Response(503, text="Work queue depth exceeded")
        return rpc_reply(request, 102)

    with mock_rpc(handler) as source:
        assert source.call("getblockcount") == 102
    waits = [b - a for a, b in zip(seen, seen[1:])]
    # attempt n waits in [d/2, d], d = 0.04 * 2**n: the second wait's floor is the first's ceiling
    assert len(seen) == 3 and waits[0] >= 0.02 and waits[1] >= 0.04
    for attempt in range(5):
        assert FAST.delay(attempt) <= min(1.0, 0.04 * 2 ** attempt)
    assert FAST.delay(0, retry_after=30) == 1.0            # the server's hint, capped


def test_answers_are_not_retried_and_failures_are_bounded():
    calls = []

    def json_error(request):
        calls.append(1)
        return rpc_reply(request, error={"code": -28, "message": "Loading block index..."})

    with mock_rpc(json_error) as source:
        with pytest.raises(RpcCallError) as err:
            source.call("getblockcount")
    assert err.value.code == -28 and len(calls) == 1            # a JSON-RPC error is an answer

    calls.clear()

    def always_busy(request):
        calls.append(1)
        return httpx.Response(503, text="Work queue depth exceeded")

    with mock_rpc(always_busy) as source:
        with pytest.raises(SourceError, match="HTTP 503"):
            source.call("getblockcount")
    assert len(calls) == 3


def test_only_idempotent_calls_are_repeated_after_a_timeout():
    calls = []

    def slow(request):
        calls.append(json.loads(request.content)["method"])
        raise httpx.ReadTimeout("timed out", request=request)

    with mock_rpc(slow) as source:
        with pytest.raises(SourceUnavailable, match="timed out"):
            source.call("getblockcount")
        with pytest.raises(SourceUnavailable):
            source.mine(1)                       # may have mined: not repeated
    assert calls == ["getblockcount"] * 3 + ["milagro_mine"]

    calls.clear()

    def refused(request):
        calls.append(json.loads(request.content)["method"])
        raise httpx.ConnectError("connection refused", request=request)

    with mock_rpc(refused) as source:
        with pytest.raises(SourceUnavailable, match="unreachable"):
            source.mine(1)                       # never reached the node: safe to repeat
    assert calls == ["milagro_mine"] * 3


def test_read_timeout_against_a_silent_server():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with RpcSource(f"http://127.0.0.1:{port}/", ("u", "p"), timeout=0.3, retry=NO_RETRY) as source:
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="timed out"):
                source.call("getblockcount")
            assert time.monotonic() - started < 5


def test_fee_estimate_parsing():
    assert fee_rate_from_estimate({"feerate": Decimal("0.00012"), "blocks": 6}) == 12.0
    assert fee_rate_from_estimate({"feerate": Decimal("0.00001000"), "blocks": 2}) == 1.0
    assert fee_rate_from_estimate({"errors": ["Insufficient data or no feerate found"], "blocks": 0}) is None
    with pytest.raises(SourceError):
        fee_rate_from_estimate({"feerate": "fast"})

    def handler(request):
        target = json.loads(request.content)["params"][0]
        if target > 1008:
            return rpc_reply(request, error={"code": -8, "message": "Invalid conf_target, must be between 1 and 1008"})
        return rpc_reply(request, {"feerate": 0.00025, "blocks": target})

    with mock_rpc(handler) as source:
        assert source.fee_rate_unverified(3) == 25.0
        assert source.fee_rate_unverified(5000) is None


def test_scan_parsing_checks_shape_and_script():
    spk = KEY.script_pubkey
    good = {"success": True, "txouts": 1, "height": 5, "bestblock": "00" * 32, "total_amount": Decimal("0.5"),
            "unspents": [{"txid": "11" * 32, "vout": 1, "scriptPubKey": spk.hex(), "desc": "raw()", "amount":
                          Decimal("0.5"), "coinbase": False, "height": 4, "blockhash": "22" * 32}]}
    (coin,) = unspents_from_scan(good, spk)
    assert (coin.txid, coin.vout, coin.value, coin.script_pubkey, coin.height) == (b"\x11" * 32, 1, 50_000_000, spk, 4)
    for bad in ({**good, "success": False}, {**good, "unspents": {}}, {"success": True},
                {**good, "unspents": [{**good["unspents"][0], "scriptPubKey": OTHER.hex()}]},
                {**good, "unspents": [{**good["unspents"][0], "vout": "1"}]}, [], None):
        with pytest.raises(SourceError):
            unspents_from_scan(bad, spk)


def test_utxos_through_the_server(setup):
    """scantxoutset for the confirmed set, the mempool read whole (small) or only for spends
    (large, MEMPOOL_SCAN_LIMIT), and the pre-Core-24 fallback without gettxspendingprevout."""
    s, spk = setup, KEY.script_pubkey
    expected = set(s["emb"].utxos_unverified(spk))
    assert set(s["rpc"].utxos_unverified(spk)) == expected
    assert (s["tx_a"], 0) not in {(c.txid, c.vout) for c in expected}       # spent by tx_b, in the mempool
    confirmed = {c for c in expected if c.height is not None}
    other = set(s["emb"].utxos_unverified(OTHER))
    assert any(c.height is None for c in other) and set(s["rpc"].utxos_unverified(OTHER)) == other

    real = httpx.Client()

    def old_bitcoind(request):              # forwards to our server, as a Core without the method
        body = json.loads(request.content)
        if isinstance(body, dict) and body["method"] == "gettxspendingprevout":
            return rpc_reply(request, error={"code": -32601, "message": "Method not found"})
        forwarded = real.post(str(request.url), content=request.content, headers={"Authorization":
                              request.headers["Authorization"], "Content-Type": "application/json"})
        return httpx.Response(forwarded.status_code, content=forwarded.content)

    url, cookie = s["server"].url + "/", s["server"].datadir / ".cookie"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rpc_steps, "MEMPOOL_SCAN_LIMIT", 0)
        with RpcSource(url, cookie_file=cookie) as big_mempool:
            assert set(big_mempool.utxos_unverified(spk)) == confirmed
            assert big_mempool.utxos_unverified(OTHER) == []      # its only coin is unconfirmed: left out
        with RpcSource(url, cookie_file=cookie, transport=httpx.MockTransport(old_bitcoind)) as old:
            assert set(old.utxos_unverified(spk)) == confirmed
    real.close()


def test_async_rpc_source_matches_embedded(setup):
    s = setup

    async def run():
        async with AsyncRpcSource(s["server"].url + "/", cookie_file=s["server"].datadir / ".cookie") as source:
            with pytest.raises(SourceError, match="network not known yet"):
                source.network
            assert await source.resolve_network() is Network.REGTEST and source.network is Network.REGTEST
            assert await source.tip() == s["emb"].tip()
            assert await source.headers(0, 500) == s["emb"].headers(0, 500)
            assert await source.header(7) == s["emb"].header(7)
            assert await source.block(s["block"]) == s["emb"].block(s["block"])
            for txid in (s["tx_a"], s["tx_b"], s["cb1"]):
                assert await source.transaction(txid) == s["emb"].transaction(txid)
                assert await source.tx_status(txid) == s["emb"].tx_status(txid)
            assert await source.outspend_unverified(s["cb1"], 0) == s["tx_a"]
            assert await source.outspend_unverified(s["tx_b"], 0) is None
            assert set(await source.utxos_unverified(OTHER)) == set(s["emb"].utxos_unverified(OTHER))
            assert await source.fee_rate_unverified() is None
            assert await source.call("getblockcount") == 102
            assert (await source.batch([("getblockcount", ()), ("getblockhash", (0,))]))[0] == 102
            with pytest.raises(BlockNotFound):
                await source.header(103)
            with pytest.raises(TxNotFound):
                await source.transaction(b"\x43" * 32)
            with pytest.raises(TxRejected):
                await source.broadcast(b"\x00\x01")
        async with AsyncRpcSource(s["server"].url + "/", ("__cookie__", "wrong")) as wrong:
            with pytest.raises(SourceError, match="refused the credentials"):
                await wrong.tip()

    asyncio.run(run())


def test_bitcoind_cookie_from_datadir(tmp_path, setup):
    server = setup["server"]
    cookie = server.datadir / ".cookie"
    (tmp_path / "regtest").mkdir()
    (tmp_path / "regtest" / ".cookie").write_text(cookie.read_text())
    assert datadir_cookie(tmp_path, Network.REGTEST) == tmp_path / "regtest" / ".cookie"
    assert datadir_cookie(tmp_path, None, 8332) == tmp_path / ".cookie"                # mainnet: no subdirectory
    assert datadir_cookie(tmp_path, None, 48332) == tmp_path / "testnet4" / ".cookie"
    assert datadir_cookie(tmp_path, None, server.port) == tmp_path / "regtest" / ".cookie"   # the only one
    with open_source(f"bitcoind://127.0.0.1:{server.port}?datadir={tmp_path}&chain=regtest") as source:
        assert source.network is Network.REGTEST and source.tip() == setup["emb"].tip()
    with pytest.raises(SourceError, match="cannot read RPC cookie"):
        open_source(f"bitcoind://127.0.0.1:{server.port}?datadir={tmp_path}&chain=main")   # mainnet's: none
    (tmp_path / ".cookie").write_text(cookie.read_text())
    with open_source(f"bitcoind://127.0.0.1:{server.port}?datadir={tmp_path}&chain=main") as source:
        with pytest.raises(SourceError, match="serves regtest, not mainnet"):
            source.tip()
    (tmp_path / "signet").mkdir()
    (tmp_path / "signet" / ".cookie").write_text("x:y")
    with pytest.raises(ValueError, match="chain="):
        datadir_cookie(tmp_path, None, server.port)

    async def run():
        source = await open_async_source(f"bitcoind://127.0.0.1:{server.port}?cookie={cookie}")
        try:
            assert isinstance(source, AsyncRpcSource) and source.network is Network.REGTEST
        finally:
            await source.aclose()
        regtest = await open_async_source(f"regtest://{server.datadir}")
        try:
            assert await regtest.tip() == setup["emb"].tip()
        finally:
            await regtest.aclose()
        with pytest.raises(ValueError, match="no chain server"):
            await open_async_source(f"regtest://{tmp_path}")

    asyncio.run(run())


def test_server_wallet_rpcs_answer_like_core(setup):
    """scantxoutset, estimatesmartfee and getmempoolinfo on the chain server: Core's shapes and errors."""
    rpc, spk = setup["rpc"], KEY.script_pubkey
    desc = descriptor(spk, Network.REGTEST)
    scan = rpc.call("scantxoutset", "start", [f"raw({spk.hex()})", {"desc": desc.partition("#")[0]}])
    assert set(scan) == {"success", "txouts", "height", "bestblock", "unspents", "total_amount"}
    assert scan["height"] == 102 and len(scan["unspents"]) == scan["txouts"] == 101    # 100 coinbases + tx_a:0
    entry = scan["unspents"][0]
    assert list(entry) == ["txid", "vout", "scriptPubKey", "desc", "amount", "coinbase", "height", "blockhash"]
    assert entry["desc"] == desc and entry["scriptPubKey"] == spk.hex()
    assert sats(scan["total_amount"]) == sum(sats(u["amount"]) for u in scan["unspents"])
    by_addr = rpc.call("scantxoutset", "start", [f"addr({address(OTHER, Network.REGTEST)})"])
    assert by_addr["unspents"] == []                   # OTHER's only coin is in the mempool: not scanned
    assert rpc.call("scantxoutset", "status") is None and rpc.call("scantxoutset", "abort") is False
    for args, code, message in (
            (("start",), -1, "scanobjects argument is required"), (("stop", []), -8, "Invalid action 'stop'"),
            (("start", ["raw(00)#aaaaaaaa"]), -5, "does not match computed checksum"),
            (("start", ["raw(00)#aaa"]), -5, "Expected 8 character checksum"),
            (("start", ["raw(zz)"]), -5, "Raw script is not hex"), (("start", ["addr(bc1qnope)"]), -5, "not valid"),
            (("start", [f"wpkh({'02' + '11' * 32})"]), -5, "not supported"), (("start", [7]), -8, "either a string"),
            (("start", [{"range": 5}]), -8, "Descriptor needs to be provided")):
        with pytest.raises(RpcCallError) as err:
            rpc.call("scantxoutset", *args)
        assert err.value.code == code and message in err.value.message, (args, err.value)
    assert rpc.call("estimatesmartfee", 6) == {"errors": ["Insufficient data or no feerate found"], "blocks": 0}
    assert rpc.call("estimatesmartfee", 1008, "CONSERVATIVE")["blocks"] == 0
    for args, message in (((0,), "between 1 and 1008"), ((1009,), "between 1 and 1008"),
                          ((6, "fast"), "estimate_mode")):
        with pytest.raises(RpcCallError, match=message):
            rpc.call("estimatesmartfee", *args)
    info = rpc.call("getmempoolinfo")
    raw_b = setup["emb"].transaction(setup["tx_b"])
    assert info["size"] == 1 and info["usage"] == len(raw_b) and sats(info["total_fee"]) == FEE


def test_utxos_through_the_server_with_an_empty_mempool(tmp_path):
    """An empty mempool means an empty JSON-RPC batch: nothing may be sent, nothing may break."""
    with ChainServer.open(tmp_path / "chain").start() as server:
        server.node.mine(3, script_pubkey=KEY.script_pubkey)
        assert server.node.mempool_txids() == []
        with RpcSource(server.url + "/", cookie_file=server.datadir / ".cookie") as source:
            coins = source.utxos_unverified(KEY.script_pubkey)
            assert source.batch([]) == []
        assert {(c.txid, c.vout, c.value) for c in coins} == {
            (c.txid, c.vout, c.value) for c in EmbeddedSource(server.node).utxos_unverified(KEY.script_pubkey)}
        assert len(coins) == 3


def test_async_client_retries_a_busy_node_and_repeats_only_idempotent_calls():
    """The async transport has its own loop (awaited sleeps): the same policy as the blocking one."""
    methods = []

    def busy_twice(request):
        methods.append(json.loads(request.content)["method"])
        if len(methods) < 3:
            return httpx.Response(503, text="Work queue depth exceeded")
        return rpc_reply(request, 102)

    def timing_out(request):
        methods.append(json.loads(request.content)["method"])
        raise httpx.ReadTimeout("timed out", request=request)

    async def run(handler, method):
        async with AsyncRpcSource("http://bitcoind.test:8332/", ("u", "p"), retry=FAST,
                                  transport=httpx.MockTransport(handler)) as source:
            return await source.call(method)

    assert asyncio.run(run(busy_twice, "getblockcount")) == 102 and methods == ["getblockcount"] * 3
    methods.clear()
    with pytest.raises(SourceUnavailable, match="timed out"):
        asyncio.run(run(timing_out, "getblockcount"))
    with pytest.raises(SourceUnavailable):
        asyncio.run(run(timing_out, "milagro_mine"))        # may have mined: asked once
    assert methods == ["getblockcount"] * 3 + ["milagro_mine"]


def test_outspend_learns_once_that_a_bitcoind_lacks_milagro_outspend():
    """gettxout null, then milagro_outspend (our server), which a bitcoind does not have: from then
    on only gettxspendingprevout is asked."""
    methods, spender = [], "ab" * 32

    def bitcoind(request):
        method = json.loads(request.content)["method"]
        methods.append(method)
        if method == "gettxout":
            return rpc_reply(request, None)
        if method == "gettxspendingprevout":
            return rpc_reply(request, [{"txid": "cd" * 32, "vout": 0, "spendingtxid": spender}])
        return rpc_reply(request, error={"code": -32601, "message": "Method not found"})

    with mock_rpc(bitcoind) as source:
        for _ in range(2):
            assert source.outspend_unverified(b"\x01" * 32, 0) == from_display_hex(spender)
    assert methods == ["gettxout", "milagro_outspend", "gettxspendingprevout", "gettxout", "gettxspendingprevout"]

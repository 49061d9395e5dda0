"""EsploraSource and AsyncEsploraSource: real Esplora bodies through the parsers, and the
clients against the chain server's REST (a real node on 127.0.0.1:0) compared with
EmbeddedSource on the same node. Handler functions stand in only for what cannot run
here: Blockstream's replies for testnet3 transactions, a busy server, a rejection."""
from __future__ import annotations

import dataclasses

import asyncio
import json
import time

import httpx
import pytest
from helpers.fixtures import fixture_path

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import BlockNotFound, SourceError, TxNotFound, TxRejected
from milagro_tls.chain.esplora import AsyncEsploraSource, EsploraSource
from milagro_tls.chain.esplora_steps import (fee_rate_from_estimates, header_from_block_value, rejection_reason,
                                             status_from_esplora, utxos_from_esplora)
from milagro_tls.chain.hashes import from_display_hex, sha256, sha256d, to_display_hex
from milagro_tls.chain.header import HEADER_STRUCT
from milagro_tls.chain.network import Network
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.source import TxStatus
from milagro_tls.chain.spec import open_async_source, open_source
from milagro_tls.chain.transport import RetryPolicy
from milagro_tls.chain.tx import parse_tx, txid_of

KEY = P2wpkhKey(bytes([31]) * 32)
OTHER = b"\x00\x14" + b"\x66" * 20
FEE = 1_000
FAST = RetryPolicy(tries=3, base_delay=0.02, max_delay=0.5)
TX_A = "19c6cd6b7b8a91e1a63d759eedd2818877a624771d38e00c3ffcedfdd09afc50"     # testnet3, P2WSH spend
TX_B = "87f4cf756eef9979f0fb6a03db2ab2e0fd46060cf97714a990623093fe227a87"     # testnet3, both outputs spent


def load(name):
    return json.loads(fixture_path("esplora", name).read_text())


def blockstream(request: httpx.Request) -> httpx.Response:
    """Blockstream's testnet3 answers, from the shared fixtures (bare hex bodies are stored as JSON strings)."""
    path = request.url.path.removeprefix("/testnet/api")
    for short, txid in (("19c6cd6b", TX_A), ("87f4cf75", TX_B)):
        if path == f"/tx/{txid}/hex":
            return httpx.Response(200, text=load(f"testnet3_tx_{short}_hex.json"))
        if path == f"/tx/{txid}/status":
            return httpx.Response(200, json=load(f"testnet3_tx_{short}_status.json"))
        if path.startswith(f"/tx/{txid}/outspend/"):
            return httpx.Response(200, json=load(f"testnet3_tx_{short}_outspends.json")[int(path.rsplit("/", 1)[1])])
    return httpx.Response(404, text="Transaction not found")


def mock_esplora(handler, **kw) -> EsploraSource:
    return EsploraSource("https://blockstream.info/testnet/api", transport=httpx.MockTransport(handler),
                         retry=kw.pop("retry", FAST), **kw)


# --- real bodies ---

def test_real_esplora_bodies_through_the_source():
    with mock_esplora(blockstream, network=Network.TESTNET3) as source:
        for txid_hex, status_name in ((TX_A, "testnet3_tx_19c6cd6b_status.json"),
                                      (TX_B, "testnet3_tx_87f4cf75_status.json")):
            txid = from_display_hex(txid_hex)
            assert txid_of(parse_tx(source.transaction(txid))) == txid
            status = load(status_name)
            assert source.tx_status(txid) == TxStatus(txid, from_display_hex(status["block_hash"]),
                                                      status["block_height"])
        spender = from_display_hex("e94fefb0d5e6635a2c0e2d8c18d232fd02079e97140fe67816fc0b419854ed41")
        assert source.outspend_unverified(from_display_hex(TX_B), 0) == spender
        assert source.outspend_unverified(from_display_hex(TX_B), 1) == spender
        assert source.outspend_unverified(from_display_hex(TX_A), 0) is None
        with pytest.raises(TxNotFound):
            source.transaction(b"\x05" * 32)
        with pytest.raises(TxNotFound):
            source.tx_status(b"\x05" * 32)


def test_lying_or_malformed_bodies_are_refused():
    def liar(request):
        path = request.url.path.removeprefix("/testnet/api")
        if path.endswith("/hex"):          # another transaction's hex for every txid
            return httpx.Response(200, text=load("testnet3_tx_87f4cf75_hex.json"))
        if path.endswith("/status"):
            return httpx.Response(200, json={"confirmed": "yes"})
        if "/outspend/" in path:
            return httpx.Response(200, text="not json")
        return httpx.Response(200, json=[])

    with mock_esplora(liar, network=Network.TESTNET3) as source:
        with pytest.raises(SourceError, match="does not parse to that txid"):
            source.transaction(from_display_hex(TX_A))
        with pytest.raises(SourceError, match="expected bool"):
            source.tx_status(from_display_hex(TX_A))
        with pytest.raises(SourceError, match="not JSON"):
            source.outspend_unverified(from_display_hex(TX_A), 0)
        with pytest.raises(SourceError, match="expected dict, got list"):
            source.fee_rate_unverified()              # [] is not a {target: rate} object
    for bad in ({"confirmed": True}, {"confirmed": True, "block_height": "7", "block_hash": "00" * 32}, [], None):
        with pytest.raises(SourceError):
            status_from_esplora(bad, b"\x01" * 32)
    for bad in ({}, [{"txid": "11" * 32, "vout": 0, "value": 5}], [{"txid": "11" * 32, "vout": -1, "value": 5,
                                                                     "status": {"confirmed": False}}]):
        with pytest.raises(SourceError):
            utxos_from_esplora(bad, OTHER)


def test_header_rebuilt_from_block_fields():
    """A /blocks entry carries a header's fields; rebuilt, they must hash to the entry's id.
    The values are block 951658's, from Core's getblock body."""
    body = json.loads(fixture_path("rpc", "mainnet_getblock_951658.electrumx.json").read_text())
    value = {"id": body["hash"], "height": body["height"], "version": body["version"], "timestamp": body["time"],
             "tx_count": body["nTx"], "size": body["size"], "weight": body["weight"],
             "merkle_root": body["merkleroot"], "previousblockhash": body["previousblockhash"],
             "mediantime": body["mediantime"], "nonce": body["nonce"], "bits": int(body["bits"], 16),
             "difficulty": body["difficulty"]}
    height, raw = header_from_block_value(value, "blocks[0]")
    assert height == 951658 and raw == fixture_path("blocks", "mainnet_951658.bin").read_bytes()[:80]
    for tampered in ({**value, "nonce": value["nonce"] + 1}, {**value, "bits": str(value["bits"])},
                     {**value, "timestamp": -1}, {**value, "merkle_root": "zz"}):
        with pytest.raises(SourceError):
            header_from_block_value(tampered, "blocks[0]")
    # nVersion with the top bit set, printed signed (as Core) or unsigned: the same header either way
    top_bit = HEADER_STRUCT.pack(-0x1FFF0000, b"\x11" * 32, b"\x22" * 32, 1_700_000_000, 0x1D00FFFF, 7)
    fields = {"id": to_display_hex(sha256d(top_bit)), "height": 9, "previousblockhash": to_display_hex(b"\x11" * 32),
              "merkle_root": to_display_hex(b"\x22" * 32), "timestamp": 1_700_000_000, "bits": 0x1D00FFFF, "nonce": 7}
    for version in (-0x1FFF0000, (1 << 32) - 0x1FFF0000):
        assert header_from_block_value({**fields, "version": version}, "blocks[0]") == (9, top_bit)


def test_fee_estimates_pick_the_nearest_faster_target():
    # Blockstream's shape: targets 1-25, 144, 504, 1008 in sat/vB (values made up: none staged)
    body = {str(t): round(50.0 / t, 3) for t in range(1, 26)} | {"144": 1.5, "504": 1.2, "1008": 1.0}
    assert fee_rate_from_estimates(body, 6) == body["6"]
    assert fee_rate_from_estimates(body, 100) == body["25"]
    assert fee_rate_from_estimates(body, 2000) == 1.0
    assert fee_rate_from_estimates({}, 6) is None and fee_rate_from_estimates({"12": 3.0}, 6) is None
    with pytest.raises(SourceError):
        fee_rate_from_estimates({"six": 3.0}, 6)


def test_rejection_body_is_the_reason():
    raw = bytes.fromhex(load("testnet3_tx_19c6cd6b_hex.json"))
    body = 'sendrawtransaction RPC error: {"code":-26,"message":"min relay fee not met, 0 < 141"}'

    def handler(request):
        assert request.method == "POST" and request.content == raw.hex().encode()
        return httpx.Response(400, text=body)

    with mock_esplora(handler) as source:
        with pytest.raises(TxRejected) as err:
            source.broadcast(raw)
    assert err.value.reason == "min relay fee not met, 0 < 141"
    assert rejection_reason("bad-txns-inputs-missingorspent") == "bad-txns-inputs-missingorspent"


def test_busy_esplora_is_retried_and_then_gives_up():
    seen = []

    def busy_twice(request):
        seen.append(time.monotonic())
        if len(seen) < 3:
            return httpx.Response(429 if len(seen) == 1 else 503, text="Too Many Requests")
        return httpx.Response(200, json=load("testnet3_tx_19c6cd6b_status.json"))

    with mock_esplora(busy_twice) as source:
        assert source.tx_status(from_display_hex(TX_A)).height == 2131550
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.01 and seen[2] - seen[1] >= 0.02

    def always_down(request):
        seen.append(1)
        return httpx.Response(502, text="Bad Gateway")

    seen.clear()
    with mock_esplora(always_down) as source:
        with pytest.raises(SourceError, match="HTTP 502"):
            source.tip()
    assert len(seen) == 3


# --- against the chain server's REST ---

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """KEY's coinbases at 1..101; tx_a (block 102) spends coinbase 1 to KEY; tx_b (mempool)
    spends tx_a:0 to OTHER; a side-branch block off 101 holds tx_s, which is nowhere else."""
    server = ChainServer.open(tmp_path_factory.mktemp("esplora") / "chain").start()
    node = server.node
    node.mine(101, KEY.script_pubkey)
    coin = coinbase(node, 1)
    tx_a = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)]))
    (block,) = node.mine(1)
    tx_b = node.submit_tx(KEY.spend([(tx_a, 0, coin[2] - FEE)], [(coin[2] - 2 * FEE, OTHER)]))
    side_coin = coinbase(node, 2)
    side_tx = KEY.spend([side_coin], [(side_coin[2] - FEE, OTHER)])
    side = node.build_block([side_tx], parent=node.block_hash(101), script_pubkey=OTHER)
    assert node.submit_block(side) == "side"
    yield {"server": server, "node": node, "emb": EmbeddedSource(node), "block": block, "tx_a": tx_a,
           "tx_b": tx_b, "cb1": coin[0], "side": sha256d(side[:80]), "tx_s": txid_of(parse_tx(side_tx))}
    server.close()


def coinbase(node, height):
    block = Block.parse(node.block(node.block_hash(height)))
    return block.txids()[0], 0, block.txs[0].vout[0].value


def outcome(fn):
    try:
        return fn()
    except Exception as exc:            # compare failures by class
        return type(exc)


def test_same_answers_as_embedded(chain):
    c, emb = chain, chain["emb"]
    with open_source(f"esplora+http://127.0.0.1:{c['server'].port}") as source:
        assert isinstance(source, EsploraSource) and source.network is Network.REGTEST
        assert source.tip() == emb.tip()
        for start, count in ((0, 500), (0, 1), (37, 13), (95, 10), (100, 50), (103, 5)):
            assert source.headers(start, count) == emb.headers(start, count), (start, count)
        checks = [lambda s: s.header(0), lambda s: s.header(102), lambda s: s.header(103),
                  lambda s: s.header(-1), lambda s: s.block(c["block"]), lambda s: s.block(c["side"]),
                  lambda s: s.block(b"\x42" * 32), lambda s: s.transaction(b"\x43" * 32),
                  lambda s: s.tx_status(b"\x43" * 32), lambda s: s.transaction(c["tx_b"], c["block"]),
                  lambda s: s.transaction(c["tx_a"], c["block"]), lambda s: s.tx_status(c["tx_a"], c["block"]),
                  lambda s: s.transaction(c["tx_s"], c["side"]), lambda s: s.tx_status(c["tx_s"], c["side"]),
                  lambda s: s.tx_status(c["tx_a"], c["side"]), lambda s: s.transaction(c["tx_s"]),
                  lambda s: s.outspend_unverified(c["cb1"], 0), lambda s: s.outspend_unverified(c["tx_a"], 0),
                  lambda s: s.outspend_unverified(c["tx_b"], 0), lambda s: s.fee_rate_unverified(2)]
        checks += [lambda s, t=t: s.transaction(t) for t in (c["tx_a"], c["tx_b"], c["cb1"])]
        checks += [lambda s, t=t: s.tx_status(t) for t in (c["tx_a"], c["tx_b"], c["cb1"])]
        for i, check in enumerate(checks):
            assert outcome(lambda: check(source)) == outcome(lambda: check(emb)), i
        for spk in (KEY.script_pubkey, OTHER, b"\x51"):
            assert set(source.utxos_unverified(spk)) == _as_esplora_says(emb.utxos_unverified(spk))
        assert any(u.height is None for u in source.utxos_unverified(OTHER))


def test_network_from_the_genesis_block(chain):
    url = f"http://127.0.0.1:{chain['server'].port}"
    assert EsploraSource(url, network=Network.REGTEST).network is Network.REGTEST
    with pytest.raises(SourceError, match="serves regtest, not mainnet"):
        open_source(f"esplora+http://127.0.0.1:{chain['server'].port}/?network=mainnet").network

    def other_chain(request):
        return httpx.Response(200, text="11" * 32)

    with pytest.raises(SourceError, match="unknown chain"):
        mock_esplora(other_chain).network


def test_broadcast_through_rest(tmp_path):
    with ChainServer.open(tmp_path / "b").start() as server:
        node = server.node
        node.mine(101, KEY.script_pubkey)
        coin = coinbase(node, 1)
        raw = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
        with EsploraSource(server.url) as source:
            assert source.broadcast(raw) == txid_of(parse_tx(raw)) and node.mempool_txids() == [txid_of(parse_tx(raw))]
            assert source.broadcast(raw) == txid_of(parse_tx(raw))               # already there: same answer
            double = KEY.spend([coin], [(coin[2] - 2 * FEE, KEY.script_pubkey)])
            with pytest.raises(TxRejected) as err:
                source.broadcast(double)
            assert err.value.reason == "txn-mempool-conflict"
            with pytest.raises(TxRejected):
                source.broadcast(b"\x00\x01")


def test_headers_come_ten_a_request(chain):
    """/blocks pages carry ten headers each; a server without them (or with smaller pages)
    still yields every header, one by one (two requests each)."""
    real = httpx.Client(base_url=chain["server"].url)
    paths = []

    def forward(request, pages=True):
        paths.append(request.url.path)
        if not pages and request.url.path.startswith("/blocks/") and request.url.path[8:].isdigit():
            return httpx.Response(404, text="Not Found")
        forwarded = real.get(request.url.path)
        return httpx.Response(forwarded.status_code, content=forwarded.content)

    with EsploraSource("http://esplora.test", transport=httpx.MockTransport(forward)) as source:
        assert source.headers(0, 103) == chain["emb"].headers(0, 103)
    assert len(paths) == 3 + 11                   # the tip (hash, height, check), then 11 pages
    paths.clear()
    with EsploraSource("http://esplora.test", transport=httpx.MockTransport(lambda r: forward(r, False))) as source:
        assert source.headers(90, 20) == chain["emb"].headers(90, 20)
    assert len(paths) == 3 + 2 + 2 * 13          # 13 headers exist from 90: the pages fail, then one by one
    real.close()


def test_async_esplora_matches_embedded(chain):
    c, emb = chain, chain["emb"]

    async def run():
        source = await open_async_source(f"esplora+http://127.0.0.1:{c['server'].port}?network=regtest")
        async with source:
            assert isinstance(source, AsyncEsploraSource) and source.network is Network.REGTEST
            assert await source.tip() == emb.tip()
            assert await source.headers(0, 500) == emb.headers(0, 500)   # eleven pages, fetched concurrently
            assert await source.header(50) == emb.header(50)
            assert await source.block(c["block"]) == emb.block(c["block"])
            for txid in (c["tx_a"], c["tx_b"], c["cb1"]):
                assert await source.transaction(txid) == emb.transaction(txid)
                assert await source.tx_status(txid) == emb.tx_status(txid)
            assert await source.tx_status(c["tx_s"], c["side"]) == emb.tx_status(c["tx_s"], c["side"])
            assert await source.outspend_unverified(c["tx_a"], 0) == c["tx_b"]
            assert set(await source.utxos_unverified(OTHER)) == _as_esplora_says(emb.utxos_unverified(OTHER))
            assert await source.fee_rate_unverified() is None
            with pytest.raises(BlockNotFound):
                await source.header(10_000)
            with pytest.raises(TxRejected):
                await source.broadcast(b"\x00\x01")
        with pytest.raises(SourceError, match="serves regtest"):
            await open_async_source(f"esplora+http://127.0.0.1:{c['server'].port}?network=testnet4")

    asyncio.run(run())


def test_script_hash_is_plain_sha256(chain):
    """Esplora's /scripthash/:hash is SHA256(script) in byte order (electrs), not Electrum's reversed form."""
    with httpx.Client(base_url=chain["server"].url) as http:
        plain = http.get(f"/scripthash/{sha256(OTHER).hex()}/utxo").json()
        reversed_form = http.get(f"/scripthash/{sha256(OTHER)[::-1].hex()}/utxo").json()
        assert plain and reversed_form == []
        assert http.get("/scripthash/xyz/utxo").status_code == 400


def _as_esplora_says(coins) -> set:
    """Esplora's utxo list does not say which outputs are coinbases."""
    return {dataclasses.replace(c, coinbase=None) for c in coins}


def test_async_parallel_pages_all_finish_before_a_failure_is_raised():
    """One /blocks page fails at once while the others are still in flight: the failure is raised
    only after every request has finished, so none is left running on a closing client."""
    tip = "22" * 32
    finished = []

    async def handler(request):
        path = request.url.path
        if path == "/blocks/tip/hash" or path == "/block-height/25":
            return httpx.Response(200, text=tip)
        if path == "/blocks/tip/height":
            return httpx.Response(200, text="25")
        if path == "/blocks/9":
            return httpx.Response(400, text="bad request")
        await asyncio.sleep(0.05)
        finished.append(path)
        return httpx.Response(404, text="Not Found")

    async def run():
        async with AsyncEsploraSource("http://esplora.test", transport=httpx.MockTransport(handler),
                                      retry=FAST) as source:
            with pytest.raises(SourceError, match="HTTP 400"):
                await source.headers(0, 26)
            assert sorted(finished) == ["/blocks/19", "/blocks/25"]

    asyncio.run(run())

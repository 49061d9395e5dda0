"""The chain server: every JSON-RPC method and REST endpoint, against real Core and Esplora bodies.

A real server (real node, real kernel) runs in a thread on 127.0.0.1:0. Shapes are compared
with the shared fixtures (../shared/fixtures): same keys and JSON types for what we serve.
"""
from __future__ import annotations

import base64
import json
import os
import random
import socket
import stat

import httpx
import pytest
from embit.transaction import Transaction, TransactionInput
from helpers.fixtures import fixture_path

from milagro_tls.chain.block import Block
from milagro_tls.chain.hashes import from_display_hex, sha256d, to_display_hex
from milagro_tls.chain.merkle import merkle_root, root_from_branch
from milagro_tls.chain.merkleblock import parse_merkleblock
from milagro_tls.chain.merkleblock import build_merkleblock, partial_merkle_tree
from milagro_tls.chain.network import PARAMS, Network
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.script_text import address
from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.tx import parse_tx, tx_weight, txid_of
from milagro_tls.chain.txjson import (HeaderContext, Prevout, block_tx_count, core_block, core_tx, esplora_status,
                                      esplora_tx)
from helpers.nodes import coinbase_coin

KEY = P2wpkhKey(bytes([7]) * 32)
OTHER = b"\x00\x14" + b"\x44" * 20
FEE = 1_000


def load(*parts):
    return json.loads(fixture_path(*parts).read_text())


class Rpc:
    """A bare JSON-RPC client: we want to see the envelopes and HTTP statuses themselves."""

    def __init__(self, server: ChainServer) -> None:
        self.url = server.url + "/"
        user, _, password = (server.datadir / ".cookie").read_text().partition(":")
        self.auth = (user, password)
        self.http = httpx.Client(timeout=30)

    def raw(self, payload, auth=None) -> httpx.Response:
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        return self.http.post(self.url, content=body, auth=auth or self.auth)

    def envelope(self, method, *params, req_id="t"):
        return self.raw({"jsonrpc": "1.0", "id": req_id, "method": method, "params": list(params)}).json()

    def __call__(self, method, *params):
        reply = self.envelope(method, *params)
        assert reply["error"] is None, reply
        return reply["result"]

    def error(self, method, *params):
        reply = self.envelope(method, *params)
        assert reply["result"] is None and set(reply) == {"result", "error", "id"}
        return reply["error"]["code"], reply["error"]["message"]


def start(tmp_path, name="chain") -> ChainServer:
    server = ChainServer.open(tmp_path / name).start()
    server.node.mine(101, script_pubkey=KEY.script_pubkey)
    return server


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Blocks 1..101 pay KEY; block 102 holds two spends of coinbases 1 and 2 (tx_a first);
    tx_b (spending tx_a:0) waits in the mempool."""
    server = start(tmp_path_factory.mktemp("srv"))
    node = server.node
    spends = []
    for h in (1, 2):
        coin = coinbase_coin(node, h)
        spends.append(KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)]))
        node.submit_tx(spends[-1])
    (block_102,) = node.mine(1)
    tx_a = parse_tx(spends[0])
    value_a = tx_a.vout[0].value
    raw_b = KEY.spend([(txid_of(tx_a), 0, value_a)], [(value_a - FEE, OTHER)])
    node.submit_tx(raw_b)
    rpc = Rpc(server)
    yield {"server": server, "node": node, "rpc": rpc, "block": block_102, "spends": spends,
           "tx_a": txid_of(tx_a), "tx_b": txid_of(parse_tx(raw_b)), "raw_b": raw_b,
           "cb1": coinbase_coin(node, 1)[0]}
    server.close()


@pytest.fixture
def fresh(tmp_path):
    server = start(tmp_path)
    yield server, Rpc(server)
    server.close()


def same_shape(mine: dict, real: dict, keys=None) -> None:
    """Keys we serve that the real body also has carry the same JSON type."""
    for key in keys or (set(mine) & set(real)):
        assert key in mine, key
        real_type = float if isinstance(real[key], float) else type(real[key])
        mine_type = float if isinstance(mine[key], float) else type(mine[key])
        assert mine_type is real_type or {mine_type, real_type} == {int, float} and key in ("value", "difficulty"), key


# --- the renderers against real bodies (no node needed) ---

def test_esplora_tx_rendering_equals_real_bodies():
    for name in ("19c6cd6b", "87f4cf75"):
        real = load("esplora", f"testnet3_tx_{name}.json")
        raw = bytes.fromhex(load("esplora", f"testnet3_tx_{name}_hex.json"))
        prevouts = [Prevout(i["prevout"]["value"], bytes.fromhex(i["prevout"]["scriptpubkey"])) for i in real["vin"]]
        st = real["status"]
        status = esplora_status(from_display_hex(st["block_hash"]), st["block_height"], st["block_time"])
        assert status == load("esplora", f"testnet3_tx_{name}_status.json")
        assert esplora_tx(raw, Network.TESTNET3, prevouts, status) == real


def test_core_tx_and_block_rendering_equal_real_bodies():
    for name in ("mainnet_getrawtransaction_verbose_52309405.bitcoin-org.json",
                 "mainnet_getrawtransaction_verbose_0d37522b.json"):
        real = load("rpc", name)
        mine = core_tx(bytes.fromhex(real["hex"]), Network.MAINNET)
        for key in ("txid", "hash", "version", "size", "vsize", "locktime", "vin", "hex"):
            assert mine[key] == real[key], key
        for m, r in zip(mine["vout"], real["vout"]):
            assert m["value"] == float(r["value"]) and m["n"] == r["n"]
            for key in ("asm", "hex", "type"):        # old Core had reqSigs/addresses, new has desc/address
                assert m["scriptPubKey"][key] == r["scriptPubKey"][key]
            assert m["scriptPubKey"].get("address", r["scriptPubKey"]["addresses"][0]) == r["scriptPubKey"]["addresses"][0]
    real = load("rpc", "mainnet_getblock_951658.electrumx.json")
    raw = bytes.fromhex(real.pop("block"))
    ctx = HeaderContext(real["height"], real["confirmations"], real["mediantime"], int(real["chainwork"], 16),
                        block_tx_count(raw), from_display_hex(real["nextblockhash"]))
    assert core_block(raw, ctx, Network.MAINNET, 1) == real          # every field, in Core's order
    assert list(core_block(raw, ctx, Network.MAINNET, 1)) == list(real)


def test_merkleblock_builder_matches_core_and_the_parser():
    real = bytes.fromhex(fixture_path("rpc", "mainnet_gettxoutproof.bitcoin-org.hex").read_text().strip())
    header, total, matches = parse_merkleblock(real)
    assert (total, [i for _, i in matches]) == (2251, [1370])
    # Core's tree shape for (2251 txs, match at 1370): the same flag bits and hash count as the real proof.
    fake = [sha256d(i.to_bytes(4, "little")) for i in range(total)]
    bits, hashes = partial_merkle_tree(fake, [i == 1370 for i in range(total)])
    n_hashes, pos = real[84], 85 + 32 * real[84]
    flag_bytes = real[pos + 1:pos + 1 + real[pos]]
    assert len(hashes) == n_hashes
    assert bits == [bool((flag_bytes[i // 8] >> (i % 8)) & 1) for i in range(len(bits))]
    assert len(flag_bytes) == (len(bits) + 7) // 8
    # Round trips through helper-2's parser, many shapes.
    rng = random.Random(1)
    block = Block.parse(fixture_path("blocks", "mainnet_951658.bin").read_bytes())
    txids = block.txids()
    for _ in range(60):
        n = rng.choice([1, 2, 3, 5, 7, 8, 9, 16, 17, 33, len(txids)])
        wanted = set(rng.sample(txids[:n], rng.randint(1, min(n, 4))))
        hdr = block.header.serialize()
        if n != len(txids):     # a header whose root commits to the first n txids
            hdr = hdr[:36] + merkle_root(txids[:n]) + hdr[68:]
        parsed_header, parsed_total, found = parse_merkleblock(build_merkleblock(hdr, txids[:n], wanted))
        assert parsed_total == n and {t for t, _ in found} == wanted
        assert all(txids[i] == t for t, i in found)


# --- JSON-RPC ---

def test_getblockchaininfo_shape_and_values(chain):
    info = chain["rpc"]("getblockchaininfo")
    same_shape(info, load("rpc", "mainnet_getblockchaininfo.bitcoin-org.json"),
               ["chain", "blocks", "headers", "bestblockhash", "difficulty", "mediantime",
                "verificationprogress", "chainwork", "pruned"])
    tip = chain["node"].tip()
    assert info["chain"] == "regtest" and info["blocks"] == info["headers"] == tip.height == 102
    assert info["bestblockhash"] == to_display_hex(tip.block_hash)
    assert int(info["chainwork"], 16) == 2 * (tip.height + 1)       # regtest: work 2 per block
    assert info["bits"] == "207fffff" and info["difficulty"] == 4.656542373906925e-10


def test_getblockhash_and_the_error_envelope(chain):
    rpc = chain["rpc"]
    genesis = to_display_hex(PARAMS[Network.REGTEST].genesis_hash)
    assert rpc("getblockhash", 0) == genesis
    assert rpc("getblockcount") == 102 and rpc("getbestblockhash") == rpc("getblockhash", 102)
    real = load("rpc", "getblockhash_error_envelope.bitcoin-org.json")
    resp = rpc.raw({"jsonrpc": "1.0", "id": "foo", "method": "getblockhash", "params": [-1]})
    assert resp.status_code == 500 and resp.json() == real          # byte-for-byte Core's documented reply
    assert rpc.error("getblockhash", 103) == (-8, "Block height out of range")
    assert rpc.error("getblockhash", "1")[0] == -3
    assert rpc.error("getblockhash")[0] == -1                        # missing parameter: usage


def test_getblockheader(chain):
    rpc, node = chain["rpc"], chain["node"]
    block_hash = rpc("getblockhash", 102)
    header = rpc("getblockheader", block_hash)
    real = load("rpc", "mainnet_getblock_951658.electrumx.json")
    same_shape(header, real, [k for k in real if k in header])
    assert set(real) - set(header) == {"strippedsize", "size", "weight", "coinbase_tx", "tx", "block",
                                       "nextblockhash"}
    assert header["height"] == 102 and header["confirmations"] == 1 and header["nTx"] == 3
    assert header["previousblockhash"] == rpc("getblockhash", 101)
    assert rpc("getblockheader", rpc("getblockhash", 101))["nextblockhash"] == block_hash
    raw = bytes.fromhex(rpc("getblockheader", block_hash, False))
    assert raw == node.header(102) and to_display_hex(sha256d(raw)) == block_hash
    assert "previousblockhash" not in rpc("getblockheader", rpc("getblockhash", 0))
    assert rpc.error("getblockheader", "00" * 32) == (-5, "Block not found")
    assert rpc.error("getblockheader", "abc") == (-8, "blockhash must be of length 64 (not 3, for 'abc')")
    assert rpc.error("getblockheader", "zz" * 32)[0] == -8


def test_getblock_all_verbosities(chain):
    rpc, node = chain["rpc"], chain["node"]
    block_hash = to_display_hex(chain["block"])
    raw = node.block(chain["block"])
    assert rpc("getblock", block_hash, 0) == raw.hex() == rpc("getblock", block_hash, False)
    real = load("rpc", "mainnet_getblock_951658.electrumx.json")
    v1 = rpc("getblock", block_hash)
    same_shape(v1, real, [k for k in real if k in v1])
    assert set(real) - set(v1) == {"block", "nextblockhash"} and v1 == rpc("getblock", block_hash, True)
    assert v1["tx"] == [to_display_hex(t) for t in Block.parse(raw).txids()]
    assert v1["size"] == len(raw) and v1["weight"] < 4 * len(raw)
    v2 = rpc("getblock", block_hash, 2)
    assert [t["txid"] for t in v2["tx"]] == v1["tx"]
    assert "fee" not in v2["tx"][0] and all(t["fee"] == 0.00001 for t in v2["tx"][1:])
    real_tx = load("rpc", "mainnet_getrawtransaction_verbose_52309405.bitcoin-org.json")
    same_shape(v2["tx"][1], real_tx, ["txid", "hash", "version", "size", "vsize", "locktime", "vin", "vout", "hex"])
    assert "prevout" not in v2["tx"][1]["vin"][0]                      # Core: prevouts from verbosity 3
    v3 = rpc("getblock", block_hash, 3)
    assert v3["tx"][1]["vin"][0]["prevout"]["generated"] is True and v3["tx"][1]["vin"][0]["prevout"]["height"] == 1
    assert rpc.error("getblock", "11" * 32) == (-5, "Block not found")


def test_getrawtransaction(chain):
    rpc = chain["rpc"]
    tx_a, tx_b, block = map(to_display_hex, (chain["tx_a"], chain["tx_b"], chain["block"]))
    assert rpc("getrawtransaction", tx_a) == chain["spends"][0].hex()
    verbose = rpc("getrawtransaction", tx_a, True)
    real = load("rpc", "mainnet_getrawtransaction_verbose_52309405.bitcoin-org.json")
    same_shape(verbose, real, list(real))
    for key in ("txid", "vout", "scriptSig", "sequence"):
        assert key in verbose["vin"][0]
    assert verbose["vin"][0]["txinwitness"] and verbose["blockhash"] == block
    assert verbose["confirmations"] == 1 and verbose["time"] == verbose["blocktime"]
    assert verbose["vout"][0]["scriptPubKey"]["address"] == address(KEY.script_pubkey, Network.REGTEST)
    assert verbose["vout"][0]["scriptPubKey"]["type"] == "witness_v0_keyhash"
    assert verbose["vout"][0]["scriptPubKey"]["desc"].startswith("addr(bcrt1q")
    in_block = rpc("getrawtransaction", tx_a, 1, block)
    assert in_block["in_active_chain"] is True and list(in_block)[0] == "in_active_chain"
    mempool = rpc("getrawtransaction", tx_b, 2)
    assert "blockhash" not in mempool and "confirmations" not in mempool and mempool["fee"] == 0.00001
    assert rpc.error("getrawtransaction", "22" * 32) == (
        -5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
    assert rpc.error("getrawtransaction", tx_b, 0, block)[0] == -5
    assert rpc.error("getrawtransaction", tx_a, 0, "33" * 32) == (-5, "Block hash not found")
    assert rpc.error("getrawtransaction", "xyz")[0] == -8


def test_gettxout(chain):
    rpc = chain["rpc"]
    real = load("rpc", "testnet3_gettxout.bitcoin-org.json")
    tx_b = to_display_hex(chain["tx_b"])
    in_mempool = rpc("gettxout", tx_b, 0)
    same_shape(in_mempool, real, ["bestblock", "confirmations", "value", "scriptPubKey", "coinbase"])
    assert in_mempool["confirmations"] == 0 and in_mempool["scriptPubKey"]["hex"] == OTHER.hex()
    assert rpc("gettxout", tx_b, 0, False) is None
    tx_a = to_display_hex(chain["tx_a"])
    assert rpc("gettxout", tx_a, 0) is None                          # spent by tx_b in the mempool
    confirmed = rpc("gettxout", tx_a, 0, False)
    assert confirmed["confirmations"] == 1 and confirmed["coinbase"] is False
    coinbase = rpc("gettxout", to_display_hex(coinbase_coin(chain["node"], 10)[0]), 0)
    assert coinbase["coinbase"] is True and coinbase["confirmations"] == 93 and coinbase["value"] == 50
    assert rpc("gettxout", to_display_hex(chain["cb1"]), 0) is None   # spent on chain
    assert rpc.error("gettxout", tx_a, -1)[0] == -8
    assert rpc.error("gettxout", tx_a, 2**32)[0] == -8
    assert rpc.error("gettxout", tx_a, 10**30) == (-3, "JSON integer out of range")


def test_gettxoutproof_parses_and_proves(chain):
    rpc, node = chain["rpc"], chain["node"]
    txids = Block.parse(node.block(chain["block"])).txids()
    for wanted in ([txids[1]], [txids[0], txids[2]], txids):
        proof = bytes.fromhex(rpc("gettxoutproof", [to_display_hex(t) for t in wanted]))
        header, total, found = parse_merkleblock(proof)
        assert header.hash == chain["block"] and total == 3
        assert [(t, txids.index(t)) for t in sorted(wanted, key=txids.index)] == found
    with_hash = rpc("gettxoutproof", [to_display_hex(txids[2])], to_display_hex(chain["block"]))
    assert parse_merkleblock(bytes.fromhex(with_hash))[2] == [(txids[2], 2)]
    assert rpc.error("gettxoutproof", [to_display_hex(chain["tx_b"])]) == (-5, "Transaction not yet in block")
    assert rpc.error("gettxoutproof", [to_display_hex(txids[1])], rpc("getblockhash", 5)) == (
        -5, "Not all transactions found in specified or retrieved block")
    assert rpc.error("gettxoutproof", [to_display_hex(txids[1])] * 2)[0] == -8
    assert rpc.error("gettxoutproof", [])[0] == -8


def test_sendrawtransaction_and_rejections(fresh):
    server, rpc = fresh
    node = server.node
    real = load("rpc", "regtest_sendrawtransaction_error.bitcoin-org.json")
    coin = coinbase_coin(node, 1)
    raw = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    txid = to_display_hex(txid_of(parse_tx(raw)))
    assert rpc("sendrawtransaction", raw.hex()) == txid
    assert rpc("sendrawtransaction", raw.hex()) == txid               # already in the mempool: fine, as Core
    assert node.mempool_txids() == [from_display_hex(txid)]
    double = KEY.spend([coin], [(coin[2] - 2 * FEE, OTHER)])
    reply = rpc.envelope("sendrawtransaction", double.hex())
    assert set(reply["error"]) == set(real) and type(reply["error"]["code"]) is type(real["code"])
    assert (reply["error"]["code"], reply["error"]["message"]) == (-26, "txn-mempool-conflict")
    assert rpc.error("sendrawtransaction", "00") == (-22, "TX decode failed. Make sure the tx has at least one input.")
    assert rpc.error("sendrawtransaction", "zz")[0] == -22
    missing = KEY.spend([(b"\x55" * 32, 0, 10**8)], [(10**8 - FEE, OTHER)])
    assert rpc.error("sendrawtransaction", missing.hex()) == (-25, "bad-txns-inputs-missingorspent")
    greedy = KEY.spend([coinbase_coin(node, 2)], [(1_000, OTHER)])     # ~50 BTC fee
    assert rpc.error("sendrawtransaction", greedy.hex()) == (
        -25, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
    node.mine(1)
    assert rpc.error("sendrawtransaction", raw.hex()) == (-27, "Transaction outputs already in utxo set")
    assert rpc("sendrawtransaction", greedy.hex(), 0) == to_display_hex(txid_of(parse_tx(greedy)))


def test_testmempoolaccept(fresh):
    server, rpc = fresh
    coin = coinbase_coin(server.node, 1)
    good = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    (result,) = rpc("testmempoolaccept", [good.hex()])
    assert result["allowed"] is True and result["txid"] == to_display_hex(txid_of(parse_tx(good)))
    assert result["wtxid"] == to_display_hex(sha256d(good)) and result["fees"]["base"] == 0.00001
    assert result["vsize"] == (tx_weight(good, parse_tx(good)) + 3) // 4 < len(good)
    assert server.node.mempool_txids() == []                          # nothing stored
    bad = KEY.spend([coin], [(coin[2] + 1, OTHER)])
    (rejected,) = rpc("testmempoolaccept", [bad.hex()])
    assert rejected["allowed"] is False and rejected["reject-reason"] == "bad-txns-in-belowout"
    missing = KEY.spend([(b"\x66" * 32, 1, 10**6)], [(10**6 - FEE, OTHER)])
    assert rpc("testmempoolaccept", [missing.hex()])[0]["reject-reason"] == "missing-inputs"
    greedy = KEY.spend([coin], [(1_000, OTHER)])
    assert rpc("testmempoolaccept", [greedy.hex()])[0]["reject-reason"] == "max-fee-exceeded"
    assert rpc("testmempoolaccept", [greedy.hex()], 0)[0]["allowed"] is True
    assert rpc.error("testmempoolaccept", [])[0] == -8
    assert rpc.error("testmempoolaccept", ["beef"])[0] == -22


def test_generatetoaddress_and_milagro_methods(fresh):
    server, rpc = fresh
    addr = address(OTHER, Network.REGTEST)
    hashes = rpc("generatetoaddress", 2, addr)
    assert len(hashes) == 2 and rpc("getbestblockhash") == hashes[-1]
    coinbase = Block.parse(server.node.block(from_display_hex(hashes[0]))).txs[0]
    assert coinbase.vout[0].script_pubkey.data == OTHER
    assert rpc("generatetoaddress", -1, addr) == [] and rpc("getblockcount") == 103   # as Core: nothing mined
    assert rpc.error("generatetoaddress", 1, "bc1qnotregtest") == (-5, "Error: Invalid address")
    assert rpc.error("generatetoaddress", 1, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")[0] == -5
    assert len(rpc("milagro_mine", 1)) == 1 and rpc("getblockcount") == 104
    txid = rpc("milagro_faucet", OTHER.hex(), 12_345)
    assert rpc("getrawmempool") == [txid]
    spent = parse_tx(server.node.transaction(from_display_hex(txid))).vin[0]
    answer = rpc("milagro_outspend", spent.txid.hex(), spent.vout)
    assert answer == {"spent": True, "txid": txid, "vin": 0, "confirmed": False}
    assert rpc("gettxspendingprevout", [{"txid": spent.txid.hex(), "vout": spent.vout}]) == [
        {"txid": spent.txid.hex(), "vout": spent.vout, "spendingtxid": txid}]
    assert rpc("milagro_outspend", txid, 0) == {"spent": False}
    assert rpc.error("milagro_outspend", txid, 9)[0] == -8
    assert rpc.error("milagro_faucet", OTHER.hex(), 10**17)[0] == -1        # the node's refusal, not a crash
    assert rpc.error("milagro_mine", -1)[0] == -8


def test_outspend_names_the_spending_input(fresh):
    """milagro_outspend and Esplora's /outspend agree on which input of the spender spends the output."""
    server, rpc = fresh
    coins = [coinbase_coin(server.node, h) for h in (1, 2)]
    txid = to_display_hex(server.node.submit_tx(KEY.spend(coins, [(coins[0][2] + coins[1][2] - FEE, OTHER)])))
    for mined in (False, True):
        for n, (coin_txid, vout, _) in enumerate(coins):
            answer = rpc("milagro_outspend", to_display_hex(coin_txid), vout)
            assert answer == {"spent": True, "txid": txid, "vin": n, "confirmed": mined}
            rest = httpx.get(f"{server.url}/tx/{to_display_hex(coin_txid)}/outspend/{vout}").json()
            assert (rest["txid"], rest["vin"], rest["status"]["confirmed"]) == (txid, n, mined)
        server.node.mine(1)


# --- protocol errors, auth, robustness ---

def test_protocol_errors_and_auth(chain):
    rpc, server = chain["rpc"], chain["server"]
    reply = rpc.raw({"id": 1, "method": "nosuchmethod", "params": []})
    assert reply.status_code == 404 and reply.json()["error"] == {"code": -32601, "message": "Method not found"}
    garbage = rpc.raw(b"{not json")
    assert garbage.status_code == 500 and garbage.json() == {
        "result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None}
    assert rpc.raw(b"[]").status_code == 400
    assert rpc.raw(b"42").json()["error"]["code"] == -32700
    assert rpc.raw({"id": 2, "params": []}).json()["error"]["code"] == -32600
    assert rpc.raw({"id": 3, "method": 7}).json()["error"]["code"] == -32600
    assert rpc.raw({"id": 4, "method": "getblockhash", "params": "0"}).json()["error"]["code"] == -32600
    named = rpc.raw({"id": 5, "method": "getblockheader", "params": {"blockhash": rpc("getblockhash", 1),
                                                                      "verbose": False}}).json()
    assert named["error"] is None and len(named["result"]) == 160
    assert rpc.raw({"id": 6, "method": "getblockhash", "params": {"nope": 1}}).json()["error"]["code"] == -8
    assert rpc.error("getblockhash", 1, 2)[0] == -1
    batch = rpc.raw([{"id": 7, "method": "getblockcount"}, {"id": 8, "method": "nope"}, 9]).json()
    assert batch[0] == {"result": 102, "error": None, "id": 7} and batch[1]["error"]["code"] == -32601
    assert batch[2]["error"]["code"] == -32600
    for auth in (("__cookie__", "wrong"), ("someone", rpc.auth[1])):
        denied = rpc.raw({"id": 1, "method": "getblockcount"}, auth=auth)
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == 'Basic realm="jsonrpc"'
    no_auth = httpx.post(server.url + "/", content=b'{"method":"getblockcount"}')
    assert no_auth.status_code == 401
    bad_header = httpx.post(server.url + "/", content=b"{}", headers={"Authorization": "Basic !!!"})
    assert bad_header.status_code == 401
    assert httpx.get(server.url + "/").status_code == 405
    with socket.create_connection((server.host, server.port), timeout=5) as s:   # not HTTP at all
        s.sendall(b"\x16\x03\x01 hello?\r\n\r\n")
        assert b"400" in s.recv(1000)
    assert rpc("getblockcount") == 102                                  # still alive


def test_no_input_reaches_an_internal_error(chain):
    """Odd parameters of every JSON type get Core-style errors (never the catch-all -1 "internal error")."""
    rpc = chain["rpc"]
    tip = rpc("getbestblockhash")
    values = [None, True, -1, 0, 3, 2**40, 10**30, 1.5, "x", "00" * 32, tip, "zz" * 32, [], {}, [tip],
              {"txid": tip, "vout": 0}, [{"txid": tip, "vout": 0}], [{"txid": tip}], "0100"]
    rng = random.Random(7)
    read_only = ["getblockchaininfo", "getblockhash", "getblockheader", "getblock", "getrawtransaction", "gettxout",
                 "gettxoutproof", "sendrawtransaction", "testmempoolaccept", "getrawmempool",
                 "gettxspendingprevout", "milagro_outspend"]
    for method in read_only:
        for _ in range(40):
            params = [rng.choice(values) for _ in range(rng.randint(0, 3))]
            reply = rpc.envelope(method, *params)
            assert reply["error"] is None or "internal" not in reply["error"]["message"], (method, params, reply)
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        reply = rpc.raw('{"id":1,"method":"getblockhash","params":[%s]}' % literal).json()
        assert reply["error"]["code"] in (-3, -32700), reply
    assert rpc("getblockcount") == 102


def test_cookie_and_server_file(tmp_path):
    server = ChainServer.open(tmp_path / "c").start()
    cookie, info_path = tmp_path / "c" / ".cookie", tmp_path / "c" / "server.json"
    user, _, secret = cookie.read_text().partition(":")
    assert user == "__cookie__" and len(bytes.fromhex(secret)) == 32
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o600
    info = json.loads(info_path.read_text())
    assert info["host"] == "127.0.0.1" and info["port"] == server.port and info["pid"] == os.getpid()
    header = "Basic " + base64.b64encode(cookie.read_text().encode()).decode()
    ok = httpx.post(server.url, content=b'{"method":"getblockcount","id":1}', headers={"Authorization": header})
    assert ok.json() == {"result": 0, "error": None, "id": 1}
    server.close()
    assert not cookie.exists() and not info_path.exists()
    with pytest.raises(ValueError):
        ChainServer(None, tmp_path, host="0.0.0.0")


# --- Esplora REST ---

def test_esplora_blocks(chain):
    base, node = chain["server"].url, chain["node"]
    tip = node.tip()
    assert httpx.get(base + "/blocks/tip/height").text == "102"
    assert httpx.get(base + "/blocks/tip/hash").text == to_display_hex(tip.block_hash)
    h5 = httpx.get(base + "/block-height/5").text
    assert h5 == to_display_hex(node.block_hash(5))
    assert bytes.fromhex(httpx.get(f"{base}/block/{h5}/header").text) == node.header(5)
    raw = httpx.get(f"{base}/block/{h5}/raw")
    assert raw.headers["content-type"] == "application/octet-stream" and raw.content == node.block(node.block_hash(5))
    assert httpx.get(base + "/block-height/103").status_code == 404
    assert httpx.get(base + "/block-height/-1").status_code == 404
    assert httpx.get(f"{base}/block/{'00' * 32}/header").status_code == 404
    assert httpx.get(f"{base}/block/{'00' * 32}/raw").status_code == 404
    assert httpx.get(f"{base}/block/xyz/header").status_code == 400
    assert httpx.get(base + "/no/such/path").status_code == 404
    head = httpx.head(base + "/blocks/tip/height")
    assert head.status_code == 200 and head.headers["content-length"] == "3" and head.content == b""
    put = httpx.put(base + "/tx", content=b"00")
    assert put.status_code == 501 and put.headers["content-type"] == "text/plain" and "501" in put.text


def test_esplora_block_pages_status_and_txids(chain):
    base, rpc, node = chain["server"].url, chain["rpc"], chain["node"]
    page = httpx.get(base + "/blocks").json()
    assert [b["height"] for b in page] == list(range(102, 92, -1))
    top, core = page[0], rpc("getblock", to_display_hex(chain["block"]))
    block = Block.parse(node.block(chain["block"]))
    # The stripped size counted independently: each transaction serialized without its witnesses.
    bare = [Transaction(t.version, [TransactionInput(i.txid, i.vout, i.script_sig, i.sequence) for i in t.vin],
                        t.vout, t.locktime) for t in block.txs]
    stripped = 80 + 1 + sum(len(t.serialize()) for t in bare)
    assert core["strippedsize"] == stripped and core["weight"] == 3 * stripped + core["size"]
    assert top["weight"] == core["weight"] < 4 * core["size"]
    assert (top["id"], top["size"], top["tx_count"], top["mediantime"]) == (
        core["hash"], core["size"], core["nTx"], core["mediantime"]) and top["tx_count"] == 3
    assert (top["merkle_root"], top["previousblockhash"], top["nonce"], top["bits"]) == (
        core["merkleroot"], core["previousblockhash"], core["nonce"], int(core["bits"], 16))
    low = httpx.get(base + "/blocks/5").json()
    assert [b["height"] for b in low] == [5, 4, 3, 2, 1, 0] and low[-1]["previousblockhash"] is None
    assert all(b["weight"] == 4 * b["size"] for b in low)               # no witness data below block 102
    assert httpx.get(base + "/blocks/103").status_code == 404
    h101, h102 = to_display_hex(node.block_hash(101)), to_display_hex(chain["block"])
    assert httpx.get(f"{base}/block/{h101}/status").json() == {"in_best_chain": True, "height": 101,
                                                               "next_best": h102}
    assert httpx.get(f"{base}/block/{h102}/status").json() == {"in_best_chain": True, "height": 102}
    assert httpx.get(f"{base}/block/{h102}/txids").json() == core["tx"] == [to_display_hex(t) for t in block.txids()]
    assert httpx.get(f"{base}/block/{'00' * 32}/txids").status_code == 404
    assert httpx.get(f"{base}/block/{'00' * 32}/status").status_code == 404


def test_esplora_transactions(chain):
    base = chain["server"].url
    tx_a, tx_b, cb1 = map(to_display_hex, (chain["tx_a"], chain["tx_b"], chain["cb1"]))
    real = load("esplora", "testnet3_tx_19c6cd6b.json")
    body = httpx.get(f"{base}/tx/{tx_a}").json()
    assert list(body) == list(real)                                     # same members, same order
    same_shape(body, real)
    same_shape(body["vin"][0], real["vin"][0], [k for k in real["vin"][0] if not k.startswith("inner")])
    same_shape(body["vout"][0], real["vout"][0], list(real["vout"][0]))
    same_shape(body["status"], real["status"], list(real["status"]))
    assert body["fee"] == FEE and body["status"]["block_height"] == 102
    coinbase = httpx.get(f"{base}/tx/{cb1}").json()
    assert coinbase["vin"][0]["is_coinbase"] is True and coinbase["vin"][0]["prevout"] is None and coinbase["fee"] == 0
    assert httpx.get(f"{base}/tx/{tx_a}/hex").text == chain["spends"][0].hex()
    assert httpx.get(f"{base}/tx/{tx_a}/raw").content == chain["spends"][0]
    status = httpx.get(f"{base}/tx/{tx_a}/status").json()
    assert status == body["status"] and list(status) == list(load("esplora", "testnet3_tx_19c6cd6b_status.json"))
    assert httpx.get(f"{base}/tx/{tx_b}/status").json() == {"confirmed": False}
    assert httpx.get(f"{base}/tx/{tx_b}").json()["status"] == {"confirmed": False}
    assert httpx.get(f"{base}/tx/{'44' * 32}").status_code == 404
    assert httpx.get(f"{base}/tx/{'44' * 32}/status").status_code == 404
    assert httpx.get(f"{base}/tx/nothex/status").status_code == 400


def test_esplora_merkle_proof_and_outspends(chain):
    base = chain["server"].url
    tx_a, tx_b, cb1 = map(to_display_hex, (chain["tx_a"], chain["tx_b"], chain["cb1"]))
    proof = httpx.get(f"{base}/tx/{tx_a}/merkle-proof").json()
    assert proof["block_height"] == 102 and proof["pos"] == 1
    branch = [from_display_hex(h) for h in proof["merkle"]]
    root = root_from_branch(chain["tx_a"], proof["pos"], branch)
    assert root == Block.parse(chain["node"].block(chain["block"])).header.merkle_root
    assert httpx.get(f"{base}/tx/{tx_b}/merkle-proof").status_code == 404
    real_spent = load("esplora", "testnet3_tx_87f4cf75_outspends.json")
    real_unspent = load("esplora", "testnet3_tx_19c6cd6b_outspends.json")
    spent_on_chain = httpx.get(f"{base}/tx/{cb1}/outspend/0").json()
    assert list(spent_on_chain) == list(real_spent[0]) and spent_on_chain["txid"] == tx_a
    same_shape(spent_on_chain, real_spent[0], list(real_spent[0]))
    assert spent_on_chain["vin"] == 0 and spent_on_chain["status"]["block_height"] == 102
    in_mempool = httpx.get(f"{base}/tx/{tx_a}/outspends").json()
    assert in_mempool == [{"spent": True, "txid": tx_b, "vin": 0, "status": {"confirmed": False}}]
    unspent = httpx.get(f"{base}/tx/{tx_b}/outspends").json()
    assert unspent == real_unspent[:1]
    assert httpx.get(f"{base}/tx/{tx_b}/outspend/0").json() == real_unspent[0]
    assert httpx.get(f"{base}/tx/{tx_b}/outspend/5").status_code == 404
    assert httpx.get(f"{base}/tx/{'55' * 32}/outspends").status_code == 404


def test_esplora_broadcast(fresh):
    server, _ = fresh
    coin = coinbase_coin(server.node, 1)
    raw = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    resp = httpx.post(server.url + "/tx", content=raw.hex())
    assert resp.status_code == 200 and resp.text == to_display_hex(txid_of(parse_tx(raw)))
    assert httpx.post(server.url + "/tx", content=raw.hex()).text == resp.text      # idempotent
    conflict = httpx.post(server.url + "/tx", content=KEY.spend([coin], [(coin[2] - 5000, OTHER)]).hex())
    assert conflict.status_code == 400 and "txn-mempool-conflict" in conflict.text
    assert httpx.post(server.url + "/tx", content=b"not hex").status_code == 400
    undecodable = httpx.post(server.url + "/tx", content=b"0200")
    assert undecodable.status_code == 400 and '"code":-22' in undecodable.text
    assert httpx.post(server.url + "/tx", content=b"\xff\xfe").status_code == 400
    assert httpx.post(server.url + "/nope", content=b"").status_code == 404
    assert httpx.get(server.url + "/blocks/tip/height").text == "101"


def test_side_branch_blocks(fresh):
    """A valid block off the active chain: Core's confirmations -1 / 0 and in_active_chain false."""
    server, rpc = fresh
    node = server.node
    coin = coinbase_coin(node, 1)
    spend = KEY.spend([coin], [(coin[2] - FEE, OTHER)])
    node.submit_tx(spend)
    (active,) = node.mine(1)
    side = node.build_block([spend], parent=node.block_hash(101), script_pubkey=OTHER)
    assert node.submit_block(side) == "side"
    side_hash = to_display_hex(sha256d(side[:80]))
    header = rpc("getblockheader", side_hash)
    assert header["confirmations"] == -1 and header["height"] == 102 and "nextblockhash" not in header
    assert int(header["chainwork"], 16) == int(rpc("getblockheader", to_display_hex(active))["chainwork"], 16)
    assert rpc("getblock", side_hash, 0) == side.hex()
    txid = to_display_hex(txid_of(parse_tx(spend)))
    in_side = rpc("getrawtransaction", txid, True, side_hash)
    assert in_side["in_active_chain"] is False and in_side["confirmations"] == 0
    assert rpc("getrawtransaction", txid, True)["blockhash"] == to_display_hex(active)
    assert httpx.get(f"{server.url}/block/{side_hash}/header").text == side[:80].hex()
    proof = bytes.fromhex(rpc("gettxoutproof", [txid], side_hash))
    assert parse_merkleblock(proof)[0].hash == sha256d(side[:80])


def test_concurrent_clients(fresh):
    """Readers on several connections while another client mines: every answer well-formed."""
    from concurrent.futures import ThreadPoolExecutor
    server, _ = fresh

    def reader(seed):
        rpc, rng, seen = Rpc(server), random.Random(seed), 0
        for _ in range(25):
            height = rng.randint(0, 101)
            block_hash = rpc("getblockhash", height)
            assert rpc("getblockheader", block_hash)["height"] == height
            assert rpc("getblock", block_hash, 2)["hash"] == block_hash
            seen = max(seen, rpc("getblockchaininfo")["blocks"])
            assert rpc.http.get(f"{server.url}/block/{block_hash}/header").status_code == 200
        return seen

    def miner():
        rpc = Rpc(server)
        return [len(rpc("milagro_mine", 1)) for _ in range(10)]

    with ThreadPoolExecutor(8) as pool:
        readers = [pool.submit(reader, i) for i in range(6)]
        mined = pool.submit(miner)
        assert mined.result() == [1] * 10
        assert all(101 <= r.result() <= 111 for r in readers)
    assert server.node.tip().height == 111

"""The same identity verification, and the same wallet answers, through every chain source.

One embedded regtest chain, served by a real ChainServer on 127.0.0.1:0, is read in
process (EmbeddedSource), over JSON-RPC (RpcSource, AsyncRpcSource) and over Esplora
REST (EsploraSource, AsyncEsploraSource). The async clients run through BlockingSource
so that the verifier and HeaderChain, which are synchronous, use them unchanged.
"""
from __future__ import annotations

import dataclasses

import pytest
from helpers.sources import BlockingSource

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import DigestMismatch
from milagro_tls.chain.esplora import AsyncEsploraSource, EsploraSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.network import Network
from milagro_tls.chain.node.wallet import P2wpkhKey
from milagro_tls.chain.rpc_client import AsyncRpcSource, RpcSource
from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.party import Party

KEY = P2wpkhKey(bytes([23]) * 32)
FEE = 1_000
SOURCES = ("embedded", "rpc", "async_rpc", "esplora", "async_esplora")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A served chain holding one anchored identity, and KEY's coins: confirmed ones, one of
    them spent by a mempool transaction that pays KEY again (an unconfirmed coin)."""
    root = tmp_path_factory.mktemp("parity")
    server = ChainServer.open(root / "chain").start()
    node = server.node
    node.mine(3, KEY.script_pubkey)
    node.mine(101)
    party = Party.create(root / "home", EmbeddedSource(node), role="service", name="parity-svc")
    block = Block.parse(node.block(node.block_hash(2)))
    coin = (block.txids()[0], 0, block.txs[0].vout[0].value)
    pending = node.submit_tx(KEY.spend([coin], [(coin[2] - FEE, KEY.script_pubkey)]))
    yield {"server": server, "node": node, "party": party, "spent": coin[:2], "pending": pending}
    server.close()


def open_source(kind: str, server: ChainServer):
    cookie = server.datadir / ".cookie"
    return {
        "embedded": lambda: EmbeddedSource(server.node),
        "rpc": lambda: RpcSource(server.url + "/", cookie_file=cookie),
        "async_rpc": lambda: BlockingSource(lambda: AsyncRpcSource(server.url + "/", cookie_file=cookie)),
        "esplora": lambda: EsploraSource(server.url),
        "async_esplora": lambda: BlockingSource(lambda: AsyncEsploraSource(server.url)),
    }[kind]()


@pytest.fixture(params=SOURCES)
def source(request, chain):
    src = open_source(request.param, chain["server"])
    yield src
    src.close()


def test_identity_verifies_through_every_source(chain, source):
    party = chain["party"]
    assert source.network is Network.REGTEST
    identity, proof = resolve_anchor(party.locator, party.certificate, source, HeaderChain(":memory:", Network.REGTEST))
    assert identity.name == "parity-svc" and identity.block_hash == party.locator.block_hash
    assert identity.confirmations >= 6 and proof.tx == party.anchor_tx


def test_tampered_certificate_refused_through_every_source(chain, source):
    party = chain["party"]
    forged = dataclasses.replace(party.certificate, name="parity-impostor")
    with pytest.raises(DigestMismatch):
        resolve_anchor(party.locator, forged, source, HeaderChain(":memory:", Network.REGTEST))


def test_wallet_answers_agree_across_sources(chain):
    """utxos_unverified: the same coins from every source (confirmed and mempool, minus the
    mempool's spends); fee_rate_unverified: no estimate anywhere on regtest."""
    answers = {}
    for kind in SOURCES:
        src = open_source(kind, chain["server"])
        try:
            # Esplora's utxo list does not say which outputs are coinbases: compare without it.
            answers[kind] = (frozenset(dataclasses.replace(c, coinbase=None)
                                       for c in src.utxos_unverified(KEY.script_pubkey)), src.fee_rate_unverified(6))
        finally:
            src.close()
    coins, fee = answers["embedded"]
    assert all(answer == (coins, None) for answer in answers.values()), answers
    outpoints = {(c.txid, c.vout) for c in coins}
    assert chain["spent"] not in outpoints and (chain["pending"], 0) in outpoints
    assert {c.height for c in coins} == {1, 3, None} and fee is None
    flagged = {(c.txid, c.vout): c.coinbase for c in EmbeddedSource(chain["server"].node).utxos_unverified(
        KEY.script_pubkey)}
    assert flagged[chain["pending"], 0] is False and True in flagged.values()   # the node does say

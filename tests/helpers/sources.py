"""Chain sources for tests: a blocking face for an AsyncChainSource, so that code written
for ChainSource (HeaderChain.sync_from, resolve_anchor) runs through the async clients."""
from __future__ import annotations

import asyncio

from milagro_tls.chain.block import Block
from milagro_tls.chain.errors import BlockNotFound
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.source import ChainSource, Tip
from milagro_tls.chain.tx import parse_tx


class BlockingSource(ChainSource):
    """Runs each call of an AsyncChainSource to completion on a private event loop (one
    loop for the source's life: its httpx.AsyncClient stays bound to it)."""

    def __init__(self, factory) -> None:
        self._loop = asyncio.new_event_loop()
        self.inner = self._loop.run_until_complete(self._make(factory))
        self.network = self.inner.network

    @staticmethod
    async def _make(factory):
        source = factory()
        await source.resolve_network()
        return source

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def tip(self):
        return self._run(self.inner.tip())

    def header(self, height):
        return self._run(self.inner.header(height))

    def headers(self, start, count):
        return self._run(self.inner.headers(start, count))

    def block(self, block_hash):
        return self._run(self.inner.block(block_hash))

    def transaction(self, txid, block_hash=None):
        return self._run(self.inner.transaction(txid, block_hash))

    def tx_status(self, txid, block_hash=None):
        return self._run(self.inner.tx_status(txid, block_hash))

    def outspend_unverified(self, txid, vout):
        return self._run(self.inner.outspend_unverified(txid, vout))

    def utxos_unverified(self, script_pubkey):
        return self._run(self.inner.utxos_unverified(script_pubkey))

    def fee_rate_unverified(self, target_blocks=6):
        return self._run(self.inner.fee_rate_unverified(target_blocks))

    def broadcast(self, raw_tx):
        return self._run(self.inner.broadcast(raw_tx))

    def close(self):
        self._run(self.inner.aclose())
        self._loop.close()


class DelegatingSource(ChainSource):
    """Forwards every read to ``inner``; a test's lying or lagging source overrides what it
    changes (a stand-in written against our interface, not a mock)."""

    def __init__(self, inner: ChainSource) -> None:
        self.inner = inner
        self.network = inner.network

    def tip(self):
        return self.inner.tip()

    def header(self, height):
        return self.inner.header(height)

    def block(self, block_hash):
        return self.inner.block(block_hash)

    def transaction(self, txid, block_hash=None):
        return self.inner.transaction(txid, block_hash)

    def tx_status(self, txid, block_hash=None):
        return self.inner.tx_status(txid, block_hash)

    def outspend_unverified(self, txid, vout):
        return self.inner.outspend_unverified(txid, vout)

    def utxos_unverified(self, script_pubkey):
        return self.inner.utxos_unverified(script_pubkey)

    def fee_rate_unverified(self, target_blocks=6):
        return self.inner.fee_rate_unverified(target_blocks)

    def broadcast(self, raw_tx):
        return self.inner.broadcast(raw_tx)


class LaggingSource(DelegatingSource):
    """Hides its newest ``hidden`` blocks, as a stale or withholding server would."""

    def __init__(self, inner: ChainSource, hidden: int) -> None:
        super().__init__(inner)
        self.hidden = hidden

    def tip(self):
        height = self.inner.tip().height - self.hidden
        return Tip(height, BlockHeader.parse(self.inner.header(height)).hash)

    def header(self, height):
        if height > self.tip().height:
            raise BlockNotFound(str(height))
        return self.inner.header(height)


class TxSwappingSource(DelegatingSource):
    """Serves another serialization of one transaction (same txid: another witness, or none) in
    its block and alone."""

    def __init__(self, inner: ChainSource, txid: bytes, new_tx: bytes) -> None:
        super().__init__(inner)
        self.txid, self.new_tx = txid, new_tx

    def block(self, block_hash):
        block = Block.parse(self.inner.block(block_hash))
        raws = tuple(self.new_tx if tx.hash() == self.txid else raw for tx, raw in zip(block.txs, block.raw_txs))
        return Block(block.header, tuple(parse_tx(raw) for raw in raws), raws).serialize()

    def transaction(self, txid, block_hash=None):
        return self.new_tx if txid == self.txid else self.inner.transaction(txid, block_hash)

"""Sources whose reads are written once, as generators, and driven sync or async.

Each read of an HTTP source (``RpcSteps``, ``EsploraSteps``) is a generator that yields
requests and receives their answers (or the SourceError they raised, which it may handle),
then returns the result. ``SteppedSource`` and ``AsyncSteppedSource`` drive those generators
over a blocking or an asyncio transport, so a fix to a read lands in both. A subclass
supplies ``_execute(request)`` and the ``*_steps`` generators.
"""
from __future__ import annotations

from .async_source import AsyncChainSource
from .errors import SourceError
from .network import Network
from .source import ChainSource, Tip, TxStatus, UnspentOutput


def _advance(steps, value, error):
    return steps.throw(error) if error is not None else steps.send(value)


class SteppedSource(ChainSource):
    @property
    def network(self) -> Network:
        return self._drive(self._network_steps())      # asks the server once, then answers from memory

    def _drive(self, steps):
        value = error = None
        while True:
            try:
                request = _advance(steps, value, error)
            except StopIteration as done:
                return done.value
            value = error = None
            try:
                value = self._execute(request)
            except SourceError as exc:       # handed to the steps, which may handle it
                error = exc

    def tip(self) -> Tip:
        return self._drive(self._tip_steps())

    def header(self, height: int) -> bytes:
        return self._drive(self._header_steps(height))

    def headers(self, start: int, count: int) -> list[bytes]:
        return self._drive(self._headers_steps(start, count))

    def block(self, block_hash: bytes) -> bytes:
        return self._drive(self._block_steps(block_hash))

    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        return self._drive(self._tx_steps(txid, block_hash))

    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        return self._drive(self._tx_status_steps(txid, block_hash))

    def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        return self._drive(self._outspend_steps(txid, vout))

    def utxos_unverified(self, script_pubkey: bytes) -> list[UnspentOutput]:
        return self._drive(self._utxos_steps(script_pubkey))

    def fee_rate_unverified(self, target_blocks: int = 6) -> float | None:
        return self._drive(self._fee_steps(target_blocks))

    def broadcast(self, raw_tx: bytes) -> bytes:
        return self._drive(self._broadcast_steps(raw_tx))


class AsyncSteppedSource(AsyncChainSource):
    async def _drive(self, steps):
        value = error = None
        while True:
            try:
                request = _advance(steps, value, error)
            except StopIteration as done:
                return done.value
            value = error = None
            try:
                value = await self._execute(request)
            except SourceError as exc:
                error = exc

    async def resolve_network(self) -> Network:
        return await self._drive(self._network_steps())

    async def tip(self) -> Tip:
        return await self._drive(self._tip_steps())

    async def header(self, height: int) -> bytes:
        return await self._drive(self._header_steps(height))

    async def headers(self, start: int, count: int) -> list[bytes]:
        return await self._drive(self._headers_steps(start, count))

    async def block(self, block_hash: bytes) -> bytes:
        return await self._drive(self._block_steps(block_hash))

    async def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        return await self._drive(self._tx_steps(txid, block_hash))

    async def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        return await self._drive(self._tx_status_steps(txid, block_hash))

    async def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        return await self._drive(self._outspend_steps(txid, vout))

    async def utxos_unverified(self, script_pubkey: bytes) -> list[UnspentOutput]:
        return await self._drive(self._utxos_steps(script_pubkey))

    async def fee_rate_unverified(self, target_blocks: int = 6) -> float | None:
        return await self._drive(self._fee_steps(target_blocks))

    async def broadcast(self, raw_tx: bytes) -> bytes:
        return await self._drive(self._broadcast_steps(raw_tx))

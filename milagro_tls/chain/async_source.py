"""AsyncChainSource: the ChainSource interface for asyncio, method for method.

The same contract as ``source.ChainSource`` (wire-order hashes, BlockNotFound /
TxNotFound / TxRejected, ``*_unverified`` answers are the source's word), awaited.
One difference: learning the network may need a request, and a property cannot be
awaited, so ``network`` is known once ``resolve_network()`` ran (``spec.open_async_source``
runs it) or the network was given to the constructor.
"""
from __future__ import annotations

import abc

from .errors import SourceError
from .network import Network
from .source import Tip, TxStatus, UnspentOutput


class AsyncChainSource(abc.ABC):
    _network: Network | None = None

    @property
    def network(self) -> Network:
        if self._network is None:
            raise SourceError(f"{type(self).__name__}: network not known yet; await resolve_network() first")
        return self._network

    @abc.abstractmethod
    async def resolve_network(self) -> Network:
        """Ask the server which network it serves (once), check it against any network
        given to the constructor, and return it."""

    @abc.abstractmethod
    async def tip(self) -> Tip: ...

    @abc.abstractmethod
    async def header(self, height: int) -> bytes: ...

    @abc.abstractmethod
    async def headers(self, start: int, count: int) -> list[bytes]: ...

    @abc.abstractmethod
    async def block(self, block_hash: bytes) -> bytes: ...

    @abc.abstractmethod
    async def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes: ...

    @abc.abstractmethod
    async def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus: ...

    @abc.abstractmethod
    async def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None: ...

    @abc.abstractmethod
    async def utxos_unverified(self, script_pubkey: bytes) -> list[UnspentOutput]: ...

    @abc.abstractmethod
    async def fee_rate_unverified(self, target_blocks: int = 6) -> float | None: ...

    @abc.abstractmethod
    async def broadcast(self, raw_tx: bytes) -> bytes: ...

    async def aclose(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

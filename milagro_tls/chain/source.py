"""The ChainSource interface: the few reads the verifier and the wallet need.

A source is a *witness*, not an authority. Everything it returns that the header
chain can check (headers, blocks, transactions with their Merkle branches) is
checked by the caller against its own HeaderChain. What headers cannot prove
(whether an output is unspent, what the mempool holds) is the source's word, and
the methods that return such answers say so in their names and docs.

Implementations: the embedded regtest node (``EmbeddedSource``), bitcoind JSON-RPC
(``RpcSource``, which also talks to ``milagro chain serve``), Esplora REST (``EsploraSource``)
and a TBS's chain endpoints for thin clients (``TbsSource``, which serves proofs, not blocks);
their async twins implement ``AsyncChainSource``. ``spec.open_source`` builds one from
``regtest://DIR``, ``bitcoind://...``, ``esplora+https://...`` or ``tbs://HOST:PORT``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import SourceError
from .network import Network

if TYPE_CHECKING:
    from .proof import AnchorProof


@dataclass(frozen=True, slots=True)
class TxStatus:
    """Where a source says a transaction is. ``block_hash`` is None while unconfirmed."""
    txid: bytes                  # wire order
    block_hash: bytes | None     # wire order
    height: int | None


@dataclass(frozen=True, slots=True)
class UnspentOutput:
    """An output a source says is unspent: **the source's word**, not provable by headers."""
    txid: bytes                  # wire order
    vout: int
    value: int
    script_pubkey: bytes
    height: int | None           # None while its transaction is unconfirmed
    coinbase: bool | None = None # None: the source does not say (Esplora); callers that care ask


@dataclass(frozen=True, slots=True)
class Tip:
    height: int
    block_hash: bytes            # wire order


class ChainSource(abc.ABC):
    """Read access to one network's chain. All hashes are bytes in wire order."""

    network: Network

    @abc.abstractmethod
    def tip(self) -> Tip: ...

    @abc.abstractmethod
    def header(self, height: int) -> bytes:
        """The 80-byte header at ``height`` on the source's active chain (BlockNotFound if none)."""

    def headers(self, start: int, count: int) -> list[bytes]:
        """Headers start..start+count-1 (fewer at the tip). Backends override to batch."""
        out = []
        tip = self.tip().height
        for h in range(start, min(start + count, tip + 1)):
            out.append(self.header(h))
        return out

    @abc.abstractmethod
    def block(self, block_hash: bytes) -> bytes:
        """The raw serialized block, witness included (BlockNotFound if unknown)."""

    @abc.abstractmethod
    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        """The raw transaction with witness (TxNotFound if unknown)."""

    @abc.abstractmethod
    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        """Where the transaction is (TxNotFound if the source knows nothing of it)."""

    @abc.abstractmethod
    def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        """The txid spending this output, or None if unspent: **the source's word**."""

    def utxos_unverified(self, script_pubkey: bytes) -> list[UnspentOutput]:
        """Unspent outputs paying ``script_pubkey`` (mempool included): **the source's word**.

        The anchoring wallet uses it to find its coins; nothing is verified with it.
        """
        raise SourceError(f"{type(self).__name__} cannot list outputs by script")

    def fee_rate_unverified(self, target_blocks: int = 6) -> float | None:
        """Estimated fee rate in sat/vB to confirm within ``target_blocks``, or None when the
        source has no estimate (regtest, a fresh node): **the source's word**; callers clamp it."""
        return None

    def anchor_proof(self, txid: bytes, block_hash: bytes, height: int) -> "AnchorProof | None":
        """The proof bundle for ``txid`` in ``block_hash``, assembled by the source, or None when
        the source serves blocks and the caller assembles it (the default). A thin client's
        source (tbs://) answers here so that it never downloads a block. Unverified: callers
        check it against their own headers (chain.verify), as any proof."""
        return None

    @abc.abstractmethod
    def broadcast(self, raw_tx: bytes) -> bytes:
        """Submit a transaction; returns its txid (TxRejected with the reason if refused)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

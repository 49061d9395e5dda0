"""EmbeddedSource: the ChainSource interface over an in-process RegtestNode."""
from __future__ import annotations

import functools
import threading
from pathlib import Path

from .network import Network
from .node import RegtestNode
from .source import ChainSource, Tip, TxStatus, UnspentOutput


def _serialised(cls):
    """Run every public method under the instance's lock: the node (kernel, SQLite, mempool) is
    not thread-safe, and a Context's header sync thread shares the source with its owner."""
    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_") and name != "open":
            def wrap(method):
                @functools.wraps(method)
                def locked(self, *args, **kwargs):
                    with self._lock:
                        return method(self, *args, **kwargs)
                return locked
            setattr(cls, name, wrap(member))
    return cls


@_serialised
class EmbeddedSource(ChainSource):
    network = Network.REGTEST

    def __init__(self, node: RegtestNode, *, owns_node: bool = False) -> None:
        self.node = node
        self._owns_node = owns_node
        self._lock = threading.RLock()

    @classmethod
    def open(cls, datadir: str | Path) -> "EmbeddedSource":
        """Open (and own) the node in ``datadir``; ``close()`` closes it."""
        return cls(RegtestNode.open(datadir), owns_node=True)

    def tip(self) -> Tip:
        return self.node.tip()

    def header(self, height: int) -> bytes:
        return self.node.header(height)

    def block(self, block_hash: bytes) -> bytes:
        return self.node.block(block_hash)

    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        return self.node.transaction(txid, block_hash)

    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        return self.node.tx_status(txid, block_hash)

    def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        return self.node.outspend(txid, vout)

    def utxos_unverified(self, script_pubkey: bytes) -> list[UnspentOutput]:
        return [UnspentOutput(txid, vout, coin.value, coin.script_pubkey, coin.height, coin.is_coinbase)
                for txid, vout, coin in self.node.utxos_by_script(script_pubkey, include_mempool=True)]

    def fee_rate_unverified(self, target_blocks: int = 6) -> float | None:
        return None          # regtest has no fee market to estimate from

    def broadcast(self, raw_tx: bytes) -> bytes:
        return self.node.submit_tx(raw_tx)

    def close(self) -> None:
        if self._owns_node:
            self.node.close()

    # --- regtest controls (the same names RpcSource offers through the chain server) ---
    def mine(self, n: int = 1, script_pubkey: bytes | None = None) -> list[bytes]:
        return self.node.mine(n, script_pubkey)

    def faucet(self, script_pubkey: bytes, amount: int) -> bytes:
        return self.node.faucet(script_pubkey, amount)

    def mempool_txids(self) -> list[bytes]:
        return self.node.mempool_txids()

"""Helpers for tests that drive the embedded regtest node directly."""
from __future__ import annotations

from milagro_tls.chain.block import Block


def coinbase_coin(node, height: int) -> tuple[bytes, int, int]:
    """(txid, vout, value) of the coinbase output mined at ``height``, for P2wpkhKey.spend."""
    block = Block.parse(node.block(node.block_hash(height)))
    return block.txids()[0], 0, block.txs[0].vout[0].value


class LockedNode:
    """The world's node for a ChainServer's handler threads, under the EmbeddedSource's lock
    (the node is not thread-safe; the source serialises its own calls with that lock)."""

    def __init__(self, source) -> None:
        self._node, self._lock = source.node, source._lock

    def __getattr__(self, name):
        member = getattr(self._node, name)
        if not callable(member):
            return member

        def locked(*args, **kwargs):
            with self._lock:
                return member(*args, **kwargs)
        return locked

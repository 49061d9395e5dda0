"""Helpers for tests that drive the embedded regtest node directly."""
from __future__ import annotations

from milagro_tls.chain.block import Block


def coinbase_coin(node, height: int) -> tuple[bytes, int, int]:
    """(txid, vout, value) of the coinbase output mined at ``height``, for P2wpkhKey.spend."""
    block = Block.parse(node.block(node.block_hash(height)))
    return block.txids()[0], 0, block.txs[0].vout[0].value

"""Keeping the SQLite index in step with the kernel's active chain.

The kernel is the authority on which chain is active; the index only follows. Both
functions run inside the store's transaction, so the index moves from one
consistent chain to another or not at all.
"""
from __future__ import annotations

from ..block import Block
from ..errors import BlockRejected
from .kernel import Kernel
from .store import Store


def replay_lost_blocks(kernel: Kernel, store: Store) -> None:
    """Give the kernel back the indexed blocks it forgot.

    The kernel writes its block index and chainstate only when it is destroyed; a
    process that dies without closing it reopens at the last clean state (often
    genesis). The index kept every active block, so the chain is rebuilt from it.
    """
    top = store.tip_height()
    height = min(kernel.height, top)
    while height > 0 and store.hash_at(height) != kernel.hash_at(height):
        height -= 1
    for h in range(height + 1, top + 1):
        entry = kernel.entry(store.hash_at(h))
        if entry is not None and kernel.block(entry) is not None:
            continue
        try:
            kernel.process_block(store.raw_block_at(h))
        except BlockRejected:
            break           # the index then goes back to what the kernel has


def follow_kernel(kernel: Kernel, store: Store) -> tuple[list[bytes], list[Block]]:
    """Disconnect the index down to its fork point with the kernel's active chain, then
    connect up to the kernel's tip.

    Returns the raw non-coinbase transactions of the disconnected blocks (lowest block
    first, as Core re-admits them) and the connected blocks.
    """
    fork = min(kernel.height, store.tip_height())
    while fork >= 0 and store.hash_at(fork) != kernel.hash_at(fork):
        fork -= 1
    undone: list[list[bytes]] = []
    while store.tip_height() > fork:
        # The kernel keeps stale blocks on disk: read the transactions back from it.
        entry = kernel.entry(store.hash_at(store.tip_height()))
        block = kernel.block(entry) if entry is not None else None
        if block is not None:
            undone.append([bytes(tx) for tx in list(block.transactions)[1:]])
        store.disconnect_tip()
    connected = []
    for height in range(fork + 1, kernel.height + 1):
        entry = kernel.entry_at(height)
        raw = bytes(kernel.block(entry))
        block = Block.parse(raw)
        store.connect(height, bytes(entry.block_hash), raw, list(block.txs))
        connected.append(block)
    return [raw for txs in reversed(undone) for raw in txs], connected

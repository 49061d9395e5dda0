"""Reorgs on the embedded regtest node: the node has no invalidateblock, so a block is reorged out
the way the network does it, by a competing branch with more work."""
from __future__ import annotations

from milagro_tls.chain.block import Block
from milagro_tls.chain.header import BlockHeader


def reorg_out(source, block_hash: bytes, *, extra: int = 1, txs: list[bytes] | None = None) -> list[bytes]:
    """Replace ``block_hash`` and every block after it by a branch from its parent that is
    ``extra`` blocks longer (``txs`` in its first block, else empty: the reorged-out
    transactions go back to the mempool). Returns the new branch's hashes; the node's tip is
    its last one."""
    node = source.node
    height = node.height_of(block_hash)
    if height is None:
        raise ValueError("the block is not on the active chain")
    parent = BlockHeader.parse(node.header_by_hash(block_hash)).prev_hash
    count = node.tip().height - height + 1 + extra
    hashes, statuses = [], []
    for i in range(count):
        raw = node.build_block(list(txs or []) if i == 0 else [], parent=parent)
        parent = Block.parse(raw).hash
        statuses.append(node.submit_block(raw))
        hashes.append(parent)
    if statuses[-1] != "active" or node.tip().block_hash != hashes[-1] or node.height_of(block_hash) is not None:
        raise AssertionError(f"the branch did not become the active chain: {statuses}")
    return hashes

"""Chain context over a RegtestNode for the RPC and REST front ends.

The node answers point questions (a header, a transaction, a UTXO); Core's and
Esplora's JSON also want derived facts: chainwork, median time past, heights of
side-branch blocks, the outputs a transaction spends. They are computed here,
with caches keyed by block hash (a hash names the same header forever, so the
caches never need invalidating on a reorg).
"""
from __future__ import annotations

import threading

from .errors import BlockNotFound, TxNotFound
from .header import BlockHeader
from .tx import is_coinbase, parse_tx
from .txjson import HeaderContext, Prevout, block_tx_count

ZERO_HASH = b"\x00" * 32
_MAX_CACHE = 200_000


class ChainView:
    def __init__(self, node) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._headers: dict[bytes, BlockHeader] = {}
        self._work: dict[bytes, int] = {}
        self._side_heights: dict[bytes, int] = {}   # never stale: a block's height is fixed by its parents

    def _remember(self, cache: dict, key: bytes, value) -> None:
        with self._lock:
            if len(cache) >= _MAX_CACHE:
                cache.clear()        # crude but bounded; regtest chains are small
            cache[key] = value

    def header(self, block_hash: bytes) -> BlockHeader:
        """Parsed header of any block the node knows (BlockNotFound otherwise)."""
        found = self._headers.get(block_hash)
        if found is None:
            found = BlockHeader.parse(self.node.header_by_hash(block_hash))
            self._remember(self._headers, block_hash, found)
        return found

    def height(self, block_hash: bytes) -> tuple[int, bool]:
        """(height, on the active chain). Side blocks: walk back to the active chain."""
        active = self.node.height_of(block_hash)
        if active is not None:
            return active, True
        cached = self._side_heights.get(block_hash)
        if cached is not None:
            return cached, False
        steps, cursor = 0, block_hash
        while True:
            parent = self.header(cursor).prev_hash
            steps += 1
            if parent == ZERO_HASH:      # a second genesis cannot connect; treat as height 0
                return 0, False
            base = self.node.height_of(parent)
            if base is None:
                base = self._side_heights.get(parent)
            if base is not None:
                self._remember(self._side_heights, block_hash, base + steps)
                return base + steps, False
            cursor = parent

    def chainwork(self, block_hash: bytes) -> int:
        """Total work of the chain ending at ``block_hash`` (Core's nChainWork)."""
        pending, cursor = [], block_hash
        while cursor != ZERO_HASH and cursor not in self._work:
            pending.append(cursor)
            cursor = self.header(cursor).prev_hash
        work = self._work.get(cursor, 0)
        for h in reversed(pending):
            work += self.header(h).work
            self._remember(self._work, h, work)
        return work

    def mediantime(self, block_hash: bytes) -> int:
        """Core's GetMedianTimePast: median time of this block and its 10 ancestors."""
        times, cursor = [], block_hash
        while cursor != ZERO_HASH and len(times) < 11:
            hdr = self.header(cursor)
            times.append(hdr.time)
            cursor = hdr.prev_hash
        times.sort()
        return times[len(times) // 2]

    def next_hash(self, height: int, active: bool, tip_height: int) -> bytes | None:
        if not active or height >= tip_height:
            return None
        try:
            return self.node.block_hash(height + 1)
        except BlockNotFound:       # the tip moved down under us
            return None

    def header_context(self, block_hash: bytes, raw_block: bytes | None = None) -> HeaderContext:
        tip = self.node.tip()
        height, active = self.height(block_hash)
        raw_block = raw_block if raw_block is not None else self.node.block(block_hash)
        return HeaderContext(
            height=height,
            confirmations=tip.height - height + 1 if active else -1,
            mediantime=self.mediantime(block_hash),
            chainwork=self.chainwork(block_hash),
            n_tx=block_tx_count(raw_block),
            next_hash=self.next_hash(height, active, tip.height))

    def prevouts(self, raw_tx: bytes) -> list[Prevout | None]:
        """The outputs a transaction spends, from the index or mempool (None where unknown)."""
        tx = parse_tx(raw_tx)
        if is_coinbase(tx):
            return []
        parents: dict[bytes, tuple] = {}
        out: list[Prevout | None] = []
        for txin in tx.vin:
            prev_txid = txin.txid[::-1]          # embit keeps it in display order
            if prev_txid not in parents:
                try:
                    parent = parse_tx(self.node.transaction(prev_txid))
                    status = self.node.tx_status(prev_txid)
                    parents[prev_txid] = (parent, status.height)
                except TxNotFound:
                    parents[prev_txid] = (None, None)
            parent, height = parents[prev_txid]
            if parent is None or txin.vout >= len(parent.vout):
                out.append(None)
                continue
            o = parent.vout[txin.vout]
            out.append(Prevout(o.value, o.script_pubkey.data, height, is_coinbase(parent)))
        return out

    def spend(self, txid: bytes, vout: int) -> tuple[bytes, int | None] | None:
        """(spending txid, its input index) when the chain or the mempool spends the output."""
        spender = self.node.outspend(txid, vout)
        if spender is None:
            return None
        spending = parse_tx(self.node.transaction(spender))
        vin = next((i for i, t in enumerate(spending.vin) if t.txid[::-1] == txid and t.vout == vout), None)
        return spender, vin

    def block_time(self, block_hash: bytes | None) -> int | None:
        return None if block_hash is None else self.header(block_hash).time

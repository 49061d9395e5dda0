"""RegtestNode: the kernel, the SQLite index and the mempool behind one lock (see API.md)."""
from __future__ import annotations

import atexit
import fcntl
import functools
import os
import threading
import time as _time
import weakref
from pathlib import Path

from ..errors import BlockNotFound, BlockRejected, DataDirLocked, NodeError, TxNotFound, TxRejected
from ..hashes import to_display_hex
from ..header import BlockHeader
from ..network import Network
from ..source import Tip, TxStatus
from .kernel import Kernel
from .mempool import MAX_MONEY, Mempool
from .miner import MAX_FUTURE_DRIFT, assemble, fees_of, select
from .store import IndexDiverged, Store, Utxo
from .sync import follow_kernel, replay_lost_blocks
from .wallet import P2wpkhKey, blocks_until_new_coin, build_payment, spendable

#: The faucet gives up after mining this many blocks for one request.
FAUCET_MAX_BLOCKS = 2_000

_open_nodes: "weakref.WeakSet[RegtestNode]" = weakref.WeakSet()


@atexit.register
def _close_open_nodes() -> None:
    # The kernel persists its state only when destroyed: close what the program forgot.
    for node in list(_open_nodes):
        node.close()


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            if self._closed:
                raise NodeError("the regtest node is closed")
            return method(self, *args, **kwargs)
    return wrapper


class RegtestNode:
    network = Network.REGTEST

    def __init__(self, datadir: Path, lock_fd: int, kernel: Kernel, store: Store, key: P2wpkhKey) -> None:
        """Use ``RegtestNode.open``."""
        self.datadir = datadir
        self._lock_fd = lock_fd
        self._kernel = kernel
        self._store = store
        self._key = key
        self._mempool = Mempool()
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def open(cls, datadir: str | Path) -> "RegtestNode":
        datadir = Path(datadir)
        datadir.mkdir(parents=True, exist_ok=True)
        fd = os.open(datadir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DataDirLocked(str(datadir)) from None
        kernel = store = None
        try:
            key = P2wpkhKey.load_or_create(datadir / "miner.key")
            kernel = Kernel(datadir / "kernel")
            store = Store(datadir / "index.sqlite")
            node = cls(datadir, fd, kernel, store, key)
            node._startup()
            _open_nodes.add(node)
            return node
        except BaseException:
            if store is not None:
                store.close()
            if kernel is not None:
                kernel.close()
            os.close(fd)           # releases the flock
            raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _open_nodes.discard(self)
            self._store.close()
            self._kernel.close()
            os.close(self._lock_fd)

    def __enter__(self) -> "RegtestNode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def miner_script_pubkey(self) -> bytes:
        """The P2WPKH of the node's own key: default payee of mined blocks, source of faucet coins."""
        return self._key.script_pubkey

    # --- keeping the index in step with the kernel ---

    def _startup(self) -> None:
        with self._lock:
            replay_lost_blocks(self._kernel, self._store)
            self._follow(persisted=self._store.mempool_raws())

    def _follow(self, persisted: list[bytes] | None = None) -> None:
        """Move the index to the kernel's active chain, and the mempool with it (at startup:
        load the ``persisted`` mempool)."""
        def candidates() -> list[bytes]:
            return persisted if persisted is not None else [e.raw for e in self._mempool.entries.values()]
        try:
            with self._store.transaction():
                disconnected, connected = follow_kernel(self._kernel, self._store)
                if disconnected or persisted is not None:
                    # After a reorg anything may have changed (maturity, finality, inputs):
                    # re-check every candidate, the disconnected ones first, as Core does.
                    self._mempool.rebuild(disconnected + candidates(), self, self._store)
                else:
                    self._mempool.confirmed([tx for b in connected for tx in b.txs[1:]], self._store)
        except IndexDiverged:
            # Rolled back. The index lost track of the kernel (a corrupt or foreign index
            # file): rebuild it from the kernel's blocks rather than stop following it.
            with self._store.transaction():
                self._store.wipe_chain()
                follow_kernel(self._kernel, self._store)
                self._mempool.rebuild(candidates(), self, self._store)

    # ChainView for the mempool (called with the lock held)
    def coin(self, txid: bytes, vout: int) -> Utxo | None:
        return self._store.utxo(txid, vout)

    def tx_confirmed(self, txid: bytes) -> bool:
        return self._store.tx_location(txid) is not None

    def tip_height(self) -> int:
        return self._store.tip_height()

    def mtp_at(self, height: int) -> int:
        return self._kernel.median_time_past(self._kernel.entry_at(height))

    # --- chain reads ---

    @_locked
    def tip(self) -> Tip:
        height = self._store.tip_height()
        return Tip(height, self._store.hash_at(height))

    @_locked
    def block_hash(self, height: int) -> bytes:
        h = self._store.hash_at(height) if height >= 0 else None
        if h is None:
            raise BlockNotFound(f"at height {height}")
        return h

    @_locked
    def header(self, height: int) -> bytes:
        return self._kernel.header(self.block_hash(height))

    @_locked
    def header_by_hash(self, block_hash: bytes) -> bytes:
        raw = self._kernel.header(block_hash)
        if raw is None:
            raise BlockNotFound(to_display_hex(block_hash))
        return raw

    @_locked
    def height_of(self, block_hash: bytes) -> int | None:
        return self._store.height_of(block_hash)

    def _kernel_block(self, block_hash: bytes):
        entry = self._kernel.entry(block_hash)
        block = self._kernel.block(entry) if entry is not None else None
        if block is None:
            raise BlockNotFound(to_display_hex(block_hash))
        return block

    @_locked
    def block(self, block_hash: bytes) -> bytes:
        return bytes(self._kernel_block(block_hash))

    def _find_in_block(self, txid: bytes, block_hash: bytes):
        try:
            block = self._kernel_block(block_hash)
        except BlockNotFound:
            raise TxNotFound(to_display_hex(txid), f"block {to_display_hex(block_hash)} unknown") from None
        for tx in block.transactions:
            if bytes(tx.txid) == txid:
                return tx
        raise TxNotFound(to_display_hex(txid), f"not in block {to_display_hex(block_hash)}")

    @_locked
    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        if block_hash is not None:
            return bytes(self._find_in_block(txid, block_hash))
        loc = self._store.tx_location(txid)
        if loc is not None:
            return bytes(self._kernel_block(loc[0]).transactions[loc[2]])
        entry = self._mempool.entries.get(txid)
        if entry is not None:
            return entry.raw
        raise TxNotFound(to_display_hex(txid))

    @_locked
    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        """With ``block_hash``: that block's word; height is None if it is not on the active chain."""
        if block_hash is not None:
            self._find_in_block(txid, block_hash)
            return TxStatus(txid, block_hash, self._store.height_of(block_hash))
        loc = self._store.tx_location(txid)
        if loc is not None:
            return TxStatus(txid, loc[0], loc[1])
        if txid in self._mempool:
            return TxStatus(txid, None, None)
        raise TxNotFound(to_display_hex(txid))

    @_locked
    def tx_location(self, txid: bytes) -> tuple[bytes, int, int] | None:
        return self._store.tx_location(txid)

    @_locked
    def utxo(self, txid: bytes, vout: int, include_mempool: bool = True) -> Utxo | None:
        """Like Core's gettxout: with the mempool, outputs it spends are gone and its own appear."""
        if include_mempool:
            if (txid, vout) in self._mempool.spenders:
                return None
            out = self._mempool.output(txid, vout)
            if out is not None:
                return out
        return self._store.utxo(txid, vout)

    @_locked
    def utxos_by_script(self, script_pubkey: bytes, include_mempool: bool = True) -> list[tuple[bytes, int, Utxo]]:
        """Unspent outputs paying ``script_pubkey`` as (txid, vout, Utxo): confirmed ones by
        height, then (with the mempool, as ``utxo`` sees it) the mempool's own in acceptance
        order, without the outputs the mempool spends."""
        found = self._store.utxos_of(script_pubkey)
        if not include_mempool:
            return found
        found = [c for c in found if (c[0], c[1]) not in self._mempool.spenders]
        for txid, entry in self._mempool.entries.items():
            for vout, out in enumerate(entry.tx.vout):
                if out.script_pubkey.data == script_pubkey and (txid, vout) not in self._mempool.spenders:
                    coin = self._mempool.output(txid, vout)      # None for an unspendable output
                    if coin is not None:
                        found.append((txid, vout, coin))
        return found

    @_locked
    def outspend(self, txid: bytes, vout: int) -> bytes | None:
        return self._store.spender(txid, vout) or self._mempool.spenders.get((txid, vout))

    # --- mempool ---

    def _check(self, raw: bytes):
        try:
            return self._mempool.check(raw, self)
        except TxRejected:
            raise
        except Exception as exc:      # whatever the input, the caller gets a rejection, not a crash
            raise TxRejected("invalid-transaction") from exc

    @_locked
    def submit_tx(self, raw: bytes) -> bytes:
        entry = self._check(raw)
        with self._store.transaction():
            self._store.mempool_add(entry.txid, entry.raw)
        self._mempool.add(entry)
        return entry.txid

    @_locked
    def test_tx(self, raw: bytes) -> bytes:
        return self._check(raw).txid

    @_locked
    def mempool_txids(self) -> list[bytes]:
        return list(self._mempool.entries)

    # --- mining ---

    @_locked
    def build_block(self, txs: list[bytes] | None = None, *, parent: bytes | None = None,
                    script_pubkey: bytes | None = None, coinbase_extra_value: int = 0,
                    time: int | None = None) -> bytes:
        """A mined block, not submitted. ``txs=None`` takes the mempool when building on the
        tip and nothing otherwise; explicit ``txs`` go in as given."""
        tip_hash = self._store.hash_at(self._store.tip_height())
        parent = tip_hash if parent is None else parent
        entry = self._kernel.entry(parent)
        if entry is None:
            raise BlockNotFound(to_display_hex(parent))
        if txs is None:
            raws, fees = select(list(self._mempool.entries.values())) if parent == tip_hash else ([], 0)
        else:
            raws = list(txs)
            fees = fees_of(raws, lambda txid, vout: (self._mempool.output(txid, vout) or self._store.utxo(txid, vout)
                                                     or self._store.spent_coin(txid, vout)))
        if time is None:
            now = int(_time.time())
            time = max(now, self._kernel.median_time_past(entry) + 1)
            if time > now + MAX_FUTURE_DRIFT:
                # Each block must beat the median of the last 11: tens of thousands of
                # blocks in a short while push the time past what the kernel accepts.
                raise NodeError("blocks mined too fast: the next block time would be over 2 h ahead")
        return assemble(parent, entry.height + 1, time, raws, fees,
                        self._key.script_pubkey if script_pubkey is None else script_pubkey,
                        coinbase_extra_value)

    @_locked
    def submit_block(self, raw: bytes) -> str:
        if not isinstance(raw, (bytes, bytearray)) or len(raw) < 81:
            raise BlockRejected("block-decode-failed")
        raw = bytes(raw)
        try:
            block_hash, verdict = self._kernel.process_block(raw)
        finally:
            # Even a refused block may come with a chain change (a branch the kernel
            # switched to while failing this one): the index always follows.
            self._follow()
        if self._store.height_of(block_hash) is not None:
            return "active"
        if verdict is not None:
            raise BlockRejected(Kernel.reason(verdict), to_display_hex(block_hash))
        if BlockHeader.parse(raw[:80]).prev_hash == self._store.hash_at(self._store.tip_height()):
            # A valid block on the tip always has more work: the kernel refused it.
            raise BlockRejected("rejected", to_display_hex(block_hash))
        return "side"

    def _mine(self, n: int, script_pubkey: bytes | None, with_mempool: bool) -> list[bytes]:
        hashes = []
        for _ in range(n):
            raw = self.build_block(None if with_mempool else [], script_pubkey=script_pubkey)
            self.submit_block(raw)
            hashes.append(BlockHeader.parse(raw[:80]).hash)
        return hashes

    @_locked
    def mine(self, n: int = 1, script_pubkey: bytes | None = None) -> list[bytes]:
        if n < 0:
            raise ValueError("cannot mine a negative number of blocks")
        return self._mine(n, script_pubkey, True)

    # --- faucet ---

    @_locked
    def faucet(self, script_pubkey: bytes, amount: int) -> bytes:
        if not 0 < amount <= MAX_MONEY:
            raise NodeError(f"faucet amount {amount} out of range")
        mined = 0
        while True:
            # The key's coins as the next block sees them: unconfirmed change included,
            # what the mempool spends left out.
            coins = self.utxos_by_script(self._key.script_pubkey)
            tip = self._store.tip_height()
            raw = build_payment(self._key, spendable(coins, tip + 1), bytes(script_pubkey), amount)
            if raw is not None:
                return self.submit_tx(raw)
            if mined >= FAUCET_MAX_BLOCKS:
                raise NodeError(f"the faucet cannot fund {amount} sat")
            n = blocks_until_new_coin(coins, tip)
            self._mine(n, None, False)   # leave the mempool to the caller's own mining
            mined += n


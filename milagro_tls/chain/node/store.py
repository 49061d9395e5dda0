"""The node's own SQLite index: what the kernel does not expose.

Tables (all hashes wire order):

  chain    height -> block hash and raw block, the active chain as last indexed. The
           raw copy exists because the kernel only persists its state when it is
           closed: after a crash it forgets blocks, and the node hands them back
  utxo     the confirmed UTXO set
  txindex  txid -> (block hash, height, position), active chain only
  spent    who spent each confirmed output, with the coin itself: this is both the
           outspend index and the undo data, so a block is disconnected by height
           without reading it back
  mempool  the persisted mempool, in acceptance (= dependency) order

Every change of the chain happens inside ``transaction()``: a crash leaves the index
at a block boundary, and the node's open-time reconciliation with the kernel repairs
the rest.
"""
from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from embit.transaction import Transaction

from ..script_text import is_unspendable
from ..tx import is_coinbase, outpoint, txid_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain(height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS utxo(
    txid BLOB, vout INTEGER, value INTEGER, spk BLOB, height INTEGER, coinbase INTEGER,
    PRIMARY KEY(txid, vout)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS utxo_height ON utxo(height);
CREATE INDEX IF NOT EXISTS utxo_spk ON utxo(spk);
CREATE TABLE IF NOT EXISTS txindex(
    txid BLOB PRIMARY KEY, block_hash BLOB, height INTEGER, pos INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txindex_height ON txindex(height);
CREATE TABLE IF NOT EXISTS spent(
    txid BLOB, vout INTEGER, spender BLOB, height INTEGER,
    value INTEGER, spk BLOB, coin_height INTEGER, coinbase INTEGER,
    PRIMARY KEY(txid, vout)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spent_height ON spent(height);
CREATE TABLE IF NOT EXISTS mempool(seq INTEGER PRIMARY KEY, txid BLOB NOT NULL UNIQUE, raw BLOB NOT NULL);
"""

#: Bumped when the tables change; an index of another version is rebuilt from the kernel.
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class Utxo:
    value: int
    script_pubkey: bytes
    height: int | None          # None while the creating transaction is in the mempool
    is_coinbase: bool


class IndexDiverged(RuntimeError):
    """The index disagrees with the blocks the kernel accepted; it must be rebuilt."""


class Store:
    def __init__(self, path: Path) -> None:
        # One connection shared by the node's threads; the node's lock serializes use.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            for table in ("chain", "utxo", "txindex", "spent", "mempool"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.executescript(_SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self):
        """Atomic unit; nests (only the outermost level commits)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def _one(self, sql: str, *args):
        return self._db.execute(sql, args).fetchone()

    # --- the indexed chain ---

    def tip_height(self) -> int:
        row = self._one("SELECT MAX(height) FROM chain")
        return -1 if row[0] is None else row[0]

    def hash_at(self, height: int) -> bytes | None:
        row = self._one("SELECT hash FROM chain WHERE height = ?", height)
        return row[0] if row else None

    def height_of(self, block_hash: bytes) -> int | None:
        row = self._one("SELECT height FROM chain WHERE hash = ?", block_hash)
        return row[0] if row else None

    def raw_block_at(self, height: int) -> bytes | None:
        row = self._one("SELECT raw FROM chain WHERE height = ?", height)
        return row[0] if row else None

    def connect(self, height: int, block_hash: bytes, raw: bytes, txs: list[Transaction]) -> None:
        """Index a block that the kernel made part of the active chain at ``height``."""
        db = self._db
        db.execute("INSERT INTO chain(height, hash, raw) VALUES (?, ?, ?)", (height, block_hash, raw))
        if height == 0:
            return              # as in Core, the genesis coinbase is neither spendable nor indexed
        for pos, tx in enumerate(txs):
            txid = txid_of(tx)
            db.execute("INSERT OR REPLACE INTO txindex VALUES (?, ?, ?, ?)", (txid, block_hash, height, pos))
            coinbase = is_coinbase(tx)
            if not coinbase:
                for inp in tx.vin:
                    prev = outpoint(inp)
                    coin = self._one("SELECT value, spk, height, coinbase FROM utxo WHERE txid = ? AND vout = ?", *prev)
                    if coin is None:
                        raise IndexDiverged(f"block at height {height} spends an output the index lacks")
                    db.execute("DELETE FROM utxo WHERE txid = ? AND vout = ?", prev)
                    db.execute("INSERT OR REPLACE INTO spent VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (*prev, txid, height, *coin))
            for vout, out in enumerate(tx.vout):
                spk = out.script_pubkey.data
                if not is_unspendable(spk):
                    db.execute("INSERT OR REPLACE INTO utxo VALUES (?, ?, ?, ?, ?, ?)",
                               (txid, vout, out.value, spk, height, int(coinbase)))

    def disconnect_tip(self) -> int:
        """Undo the highest indexed block; returns its height."""
        height = self.tip_height()
        if height < 0:
            raise IndexDiverged("nothing to disconnect")
        db = self._db
        db.execute("DELETE FROM utxo WHERE height = ?", (height,))
        # Coins created and spent inside this block vanish with it; older ones come back.
        db.execute("""INSERT OR REPLACE INTO utxo
                      SELECT txid, vout, value, spk, coin_height, coinbase FROM spent
                      WHERE height = ? AND coin_height < ?""", (height, height))
        db.execute("DELETE FROM spent WHERE height = ?", (height,))
        db.execute("DELETE FROM txindex WHERE height = ?", (height,))
        db.execute("DELETE FROM chain WHERE height = ?", (height,))
        return height

    def wipe_chain(self) -> None:
        for table in ("chain", "utxo", "txindex", "spent"):
            self._db.execute(f"DELETE FROM {table}")

    # --- reads ---

    def utxo(self, txid: bytes, vout: int) -> Utxo | None:
        row = self._one("SELECT value, spk, height, coinbase FROM utxo WHERE txid = ? AND vout = ?", txid, vout)
        return Utxo(row[0], row[1], row[2], bool(row[3])) if row else None

    def utxos_of(self, script_pubkey: bytes) -> list[tuple[bytes, int, Utxo]]:
        rows = self._db.execute(
            "SELECT txid, vout, value, spk, height, coinbase FROM utxo WHERE spk = ? ORDER BY height, txid, vout",
            (script_pubkey,)).fetchall()
        return [(r[0], r[1], Utxo(r[2], r[3], r[4], bool(r[5]))) for r in rows]

    def tx_location(self, txid: bytes) -> tuple[bytes, int, int] | None:
        row = self._one("SELECT block_hash, height, pos FROM txindex WHERE txid = ?", txid)
        return (row[0], row[1], row[2]) if row else None

    def spender(self, txid: bytes, vout: int) -> bytes | None:
        row = self._one("SELECT spender FROM spent WHERE txid = ? AND vout = ?", txid, vout)
        return row[0] if row else None

    def spent_coin(self, txid: bytes, vout: int) -> Utxo | None:
        """A confirmed output already spent on the active chain (for fee arithmetic)."""
        row = self._one("SELECT value, spk, coin_height, coinbase FROM spent WHERE txid = ? AND vout = ?", txid, vout)
        return Utxo(row[0], row[1], row[2], bool(row[3])) if row else None

    # --- the persisted mempool ---

    def mempool_raws(self) -> list[bytes]:
        return [r[0] for r in self._db.execute("SELECT raw FROM mempool ORDER BY seq")]

    def mempool_add(self, txid: bytes, raw: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO mempool(txid, raw) VALUES (?, ?)", (txid, raw))

    def mempool_remove(self, txids: list[bytes]) -> None:
        self._db.executemany("DELETE FROM mempool WHERE txid = ?", [(t,) for t in txids])

    def mempool_replace(self, entries: list[tuple[bytes, bytes]]) -> None:
        self._db.execute("DELETE FROM mempool")
        self._db.executemany("INSERT INTO mempool(txid, raw) VALUES (?, ?)", entries)

"""A validated header chain for one network, stored in SQLite.

The chain starts at a trusted checkpoint (the genesis header by default) and
accepts headers that connect to it and pass the header rules of Core's
``AcceptBlockHeader``: proof of work (CheckBlockHeader), the expected nBits, a
time above the median of the previous 11 and at most two hours ahead
(ContextualCheckBlockHeader). Forks are kept; the active chain is the branch with
the most cumulative work, the first one seen winning a tie, as Core's
CBlockIndexWorkComparator.

A batch is validated and written in one SQLite transaction, under the file's write
lock, so processes may share a file (the per-network default): each call first
catches up with what the others committed. The active chain's most recent headers
stay in memory, which makes the usual case (headers that extend the tip) free of reads.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import weakref
from operator import attrgetter
from typing import NamedTuple

from .errors import HeaderRejected, SourceError
from .hashes import from_display_hex, sha256d
from .header import HEADER_SIZE, HEADER_STRUCT, BlockHeader
from .network import PARAMS, Network
from .rules import NetworkRules, rules_for
from .source import ChainSource

#: Core's MAX_FUTURE_BLOCK_TIME (chain.h): a header may be at most 2 h ahead of our clock.
MAX_FUTURE_BLOCK_TIME = 2 * 60 * 60
#: Core's CBlockIndex::nMedianTimeSpan: median time past is over the last 11 headers.
MEDIAN_TIME_SPAN = 11
#: Active-chain headers kept in memory: the retarget look-back (2016) plus the MTP window,
#: so that extending the tip needs no read.
RECENT_HEADERS = 2016 + MEDIAN_TIME_SPAN
#: How far back sync_from looks for the block a source's chain shares with ours. One
#: retarget period; a deeper disagreement is a different chain, not a reorg to follow.
MAX_FORK_DEPTH = 2016

#: nBits values whose target and work are cached. Mainnet has used fewer than 450; only headers
#: whose PoW meets yet other bits add more, and past this many the cache starts over.
_BITS_CACHE_LIMIT = 4096

# One row per header. The active chain is ``chain``, keyed by height, so that the usual batch,
# which extends the tip, appends in order; other branches are in ``forks``. Both are searched by
# ``key``, the hash's first 8 bytes (a small index entry; rows that share a key are told apart by
# hashing ``raw``). The hash is not stored: a row's hash is the next row's prev_hash, or sha256d.
# chainwork is 32 bytes big-endian.
# Why, in SQLite time per header for the fixture's 2,633 mainnet headers into a fresh WAL file
# (median of 40 interleaved rounds, fast-phase minimum in brackets): the first layout, a headers
# table WITHOUT ROWID keyed by the hash (an insert at a random place) plus active(height, hash),
# 12.0 us (6.3); this one by executemany 8.2 us (4.3); this one by _APPEND 3.5 us (2.0).
_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chain (height INTEGER PRIMARY KEY, key BLOB NOT NULL, raw BLOB NOT NULL,"
    " chainwork BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS chain_key ON chain (key)",
    "CREATE TABLE IF NOT EXISTS forks (key BLOB NOT NULL, height INTEGER NOT NULL, raw BLOB NOT NULL,"
    " chainwork BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS forks_key ON forks (key)",
)
#: Files written before ``user_version`` was set keep their headers (they were verified when
#: added, and re-syncing a network from genesis takes long); meta is the same in both layouts.
_MIGRATE_UNVERSIONED = (
    "INSERT INTO chain (height, key, raw, chainwork) SELECT a.height, substr(h.hash, 1, 8), h.raw, h.chainwork"
    " FROM active a JOIN headers h ON h.hash = a.hash",
    "INSERT INTO forks (key, height, raw, chainwork) SELECT substr(h.hash, 1, 8), h.height, h.raw, h.chainwork"
    " FROM headers h WHERE NOT EXISTS (SELECT 1 FROM active a WHERE a.height = h.height AND a.hash = h.hash)",
    "DROP TABLE active",
    "DROP TABLE headers",
)
#: Appends ?5 headers to the chain from height ?1, their hashes, raw headers and chainworks
#: concatenated in ?2, ?3 and ?4. One statement looping inside SQLite, where executemany binds
#: and steps each row from Python: 3.5 against 8.2 us/header (see above).
_APPEND = (
    "WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < ?5)"
    " INSERT INTO chain (height, key, raw, chainwork)"
    " SELECT ?1 + n, substr(?2, 32 * n + 1, 8), substr(?3, 80 * n + 1, 80), substr(?4, 32 * n + 1, 32) FROM i"
)
_BY_KEY = ("SELECT height, raw, chainwork FROM chain WHERE key = ?1"
           " UNION ALL SELECT height, raw, chainwork FROM forks WHERE key = ?1")

_sha256 = hashlib.sha256
#: BlockHeader.parse less its length check and classmethod call, which were two thirds of its
#: 1.0 us; tuple.__new__ is the NamedTuple's own constructor, as in BlockHeader._make.
_unpack_header = HEADER_STRUCT.unpack


def _parse(raw: bytes) -> BlockHeader:
    return tuple.__new__(BlockHeader, _unpack_header(raw))


class Checkpoint(NamedTuple):
    """A header trusted without validation, with the chainwork up to and including it."""
    height: int
    header: bytes          # the 80 raw bytes
    chainwork: int


def _genesis(version: int, merkle_root_hex: str, timestamp: int, bits: int, nonce: int) -> bytes:
    return BlockHeader(version, b"\x00" * 32, from_display_hex(merkle_root_hex),
                       timestamp, bits, nonce).serialize()


_SATOSHI_ROOT = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
#: Genesis headers from Core's chainparams.cpp (CreateGenesisBlock); each hashes to
#: the network's genesis_hash, which the constructor checks.
GENESIS_HEADERS: dict[Network, bytes] = {
    Network.MAINNET: _genesis(1, _SATOSHI_ROOT, 1231006505, 0x1D00FFFF, 2083236893),
    Network.TESTNET3: _genesis(1, _SATOSHI_ROOT, 1296688602, 0x1D00FFFF, 414098458),
    Network.TESTNET4: _genesis(1, "7aa0a7ae1e223414cb807e40cd57e667b718e42aaf9306db9102fe28912b7b4e",
                               1714777860, 0x1D00FFFF, 393743547),
    Network.SIGNET: _genesis(1, _SATOSHI_ROOT, 1598918400, 0x1E0377AE, 52613770),
    Network.REGTEST: _genesis(1, _SATOSHI_ROOT, 1296688602, 0x207FFFFF, 2),
}


class _Entry:
    """One accepted header with what validation of its children needs."""
    __slots__ = ("raw", "header", "hash", "height", "chainwork", "times")

    def __init__(self, raw: bytes, header: BlockHeader, block_hash: bytes, height: int, chainwork: int,
                 times: tuple[int, ...] | None) -> None:
        self.raw = raw
        self.header = header
        self.hash = block_hash
        self.height = height
        self.chainwork = chainwork
        self.times = times     # timestamps of the last <= 11 headers ending here; None: not yet read


_by_chainwork = attrgetter("chainwork")


class _View:
    """The rules' read access (rules.ChainView), seeing the batch being validated."""

    def __init__(self, chain: "HeaderChain") -> None:
        self._chain = chain

    def header(self, block_hash: bytes) -> BlockHeader:
        # The rules ask this once per header (for its parent): one call fewer than via _entry.
        chain = self._chain
        entry = chain._cache.get(block_hash) or chain._read_entry(block_hash)
        if entry is None:
            raise KeyError(block_hash.hex())
        return entry.header

    def ancestor(self, block_hash: bytes, height: int) -> BlockHeader:
        chain = self._chain
        cache, tip_height = chain._cache, chain._tip.height
        entry = chain._entry(block_hash)
        while entry is not None and entry.height > height:
            # A retarget walks back over the batch (up to 2016 headers), none of it active yet.
            if entry.height <= tip_height and chain._active_hash_at(entry.height) == entry.hash:
                return chain._active_entry(height).header     # the rest of the way is indexed
            entry = cache.get(entry.header.prev_hash) or chain._read_entry(entry.header.prev_hash)
        if entry is None or entry.height != height:
            raise KeyError(f"no ancestor at height {height} (below the checkpoint?)")
        return entry.header


class HeaderChain:
    """Headers of one network from a checkpoint on, in SQLite at ``path`` (or ":memory:").

    ``rules`` replaces the network's NetworkRules (tests and benchmarks only). One
    lock serialises all methods, so a chain may be shared between threads; other
    processes may open the same file.
    """

    def __init__(self, path: str, network: Network, checkpoint: Checkpoint | tuple | None = None,
                 *, rules: NetworkRules | None = None) -> None:
        self.network = Network(network)
        self.rules = rules or rules_for(self.network)
        self._lock = threading.RLock()
        self._view = _View(self)
        # Target and work per nBits value, filled once a header carrying it passes the PoW check.
        self._target_by_bits: dict[int, int] = {}
        self._work_by_bits: dict[int, int] = {}
        self._path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _AFTER_FORK.add(self)
        # Other processes may use the same file (the per-network default path): each call
        # first catches up with what they committed (_follow_file), and a write validates
        # and stores under the file's write lock.
        self._shared = path not in (":memory:", "")
        self._data_version = None
        if self._shared:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # The hash index takes inserts in random order, so each header dirties about one
            # page; with the default cache and checkpoint every 1000 WAL pages, a file already
            # holding 200,000 headers took 42 us per new header, and 14 us with these (measured).
            # Neither setting weakens durability: WAL commits are what make a batch durable.
            self._db.execute("PRAGMA cache_size=-32768")          # 32 MiB
            self._db.execute("PRAGMA wal_autocheckpoint=10000")   # pages, about 40 MiB of WAL
        self._open(checkpoint)
        self._load_recent()

    # -- public reads ---------------------------------------------------------

    def tip(self) -> tuple[int, bytes]:
        with self._lock:
            self._follow_file()
            return self._tip.height, self._tip.hash

    def header_at(self, height: int) -> BlockHeader | None:
        """The active chain's header at ``height``, or None."""
        with self._lock:
            self._follow_file()
            entry = self._active_entry(height)
            return entry.header if entry else None

    def height_of(self, block_hash: bytes) -> int | None:
        """The height of ``block_hash`` if it is on the active chain, else None."""
        with self._lock:
            self._follow_file()
            entry = self._entry(block_hash)
            if entry is None or self._active_hash_at(entry.height) != block_hash:
                return None
            return entry.height

    def header_by_hash(self, block_hash: bytes) -> BlockHeader | None:
        """Any stored header, on the active chain or not."""
        with self._lock:
            self._follow_file()
            entry = self._entry(block_hash)
            return entry.header if entry else None

    def chainwork(self, block_hash: bytes) -> int | None:
        """Work up to and including ``block_hash`` (plus the checkpoint's), None if unknown."""
        with self._lock:
            self._follow_file()
            entry = self._entry(block_hash)
            return entry.chainwork if entry else None

    def confirmations(self, block_hash: bytes) -> int:
        """1 for the tip, 0 if the block is not on the active chain."""
        with self._lock:
            height = self.height_of(block_hash)
            return 0 if height is None else self._tip.height - height + 1

    # -- adding headers -------------------------------------------------------

    def add_headers(self, raw_headers: list[bytes], *, now: float | None = None) -> int:
        """Validate and store headers in order; return how many were new.

        Like Core's ProcessNewBlockHeaders, the headers accepted before a bad one
        are kept: they are written, then HeaderRejected (``.rule``) is raised.
        """
        now = time.time() if now is None else now
        with self._lock:
            accepted: list[_Entry] = []
            db = self._db
            db.execute("BEGIN IMMEDIATE")     # validated against the file's tip, not a stale copy of it
            try:
                self._follow_file()
                try:
                    self._validate(raw_headers, now, accepted)
                finally:
                    move = self._store(accepted)
                    db.execute("COMMIT")
                    if move is not None:
                        self._move_tip(*move)
                    if len(self._cache) > 2 * RECENT_HEADERS:    # drop side branches and evicted headers
                        self._cache = {entry.hash: entry for entry in self._recent}
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                    self._load_recent()       # the cache holds headers that were not written
                raise
            return len(accepted)

    def _validate(self, raw_headers: list[bytes], now: float, accepted: list[_Entry]) -> None:
        """Append each new header that passes the rules to ``accepted`` (and the cache); raise at
        the first that fails.

        This loop is two thirds of add_headers (5.4 of 7.7 us/header on the mainnet fixture in a
        fast phase; the write is most of the rest), so it keeps what it reads in locals, hashes
        and parses inline, and looks target and work up by nBits; the rarer cases (a parent or
        duplicate in the file, new bits, any rejection) call out.
        """
        cache = self._cache
        tip_hash = self._tip.hash
        view = self._view
        expected_bits, check_contextual = self.rules.expected_bits, self.rules.check_contextual
        target_by_bits, work_by_bits = self._target_by_bits, self._work_by_bits
        # Near a checkpoint other than genesis the 11 previous times are not all known,
        # and a median over fewer could wrongly reject: skip until they are.
        short_median = self._checkpoint_height == 0
        latest = now + MAX_FUTURE_BLOCK_TIME
        sha256, unpack, new_tuple, span = _sha256, _unpack_header, tuple.__new__, MEDIAN_TIME_SPAN
        last_hash = None
        for raw in raw_headers:
            if len(raw) != HEADER_SIZE:
                raise ValueError(f"a block header is {HEADER_SIZE} bytes, got {len(raw)}")
            block_hash = sha256(sha256(raw).digest()).digest()     # sha256d, inline
            if block_hash in cache:
                continue
            prev_hash = raw[4:36]
            # A child of the tip or of a header new in this batch cannot be stored yet (it
            # would have more work than the tip); anything else may be a duplicate.
            if prev_hash != tip_hash and prev_hash != last_hash and self._read_entry(block_hash) is not None:
                continue
            header = new_tuple(BlockHeader, unpack(raw))           # _parse, inline
            parent = cache.get(prev_hash) or self._read_entry(prev_hash)
            if parent is None:
                raise HeaderRejected("bad-prevblk", header.hash_hex)
            height = parent.height + 1
            bits = header.bits
            if int.from_bytes(block_hash, "little") > target_by_bits.get(bits, -1):
                self._check_pow(header, block_hash, height)      # raises, or caches new bits
            if bits != expected_bits(view, height, header):
                raise HeaderRejected("bad-diffbits", header.hash_hex, height)
            times = parent.times or self._times(parent)
            full = len(times) == span
            if (full or short_median) and header.time <= sorted(times)[len(times) // 2]:
                raise HeaderRejected("time-too-old", header.hash_hex, height)
            if header.time > latest:
                raise HeaderRejected("time-too-new", header.hash_hex, height)
            check_contextual(view, height, header)
            entry = _Entry(raw, header, block_hash, height, parent.chainwork + work_by_bits[bits],
                           (times[1:] if full else times) + (header.time,))
            accepted.append(entry)
            cache[block_hash] = entry
            last_hash = block_hash

    def _check_pow(self, header: BlockHeader, block_hash: bytes, height: int) -> None:
        """The full PoW check: raise HeaderRejected, or remember the target and work of these bits."""
        try:
            header.check_proof_of_work(self.rules.pow_limit_bits, block_hash)
        except HeaderRejected as exc:
            raise HeaderRejected(exc.rule, header.hash_hex, height) from None
        if len(self._target_by_bits) >= _BITS_CACHE_LIMIT:
            self._target_by_bits.clear()
            self._work_by_bits.clear()
        self._target_by_bits[header.bits] = header.target
        self._work_by_bits[header.bits] = header.work

    def _store(self, accepted: list[_Entry]) -> tuple[int, list[_Entry]] | None:
        """Write a batch in the open transaction; if its best header has more work than the tip,
        make its branch the active chain and return (fork height, new active headers)."""
        if not accepted:
            return None
        best = max(accepted, key=_by_chainwork)      # max() keeps the first of equals
        path: list[_Entry] = []
        if best.chainwork > self._tip.chainwork:
            entry, cache, tip_height = best, self._cache, self._tip.height
            while entry.height > tip_height:        # nothing up there is active: no need to ask
                path.append(entry)
                entry = cache.get(entry.header.prev_hash) or self._read_entry(entry.header.prev_hash)
            while self._active_hash_at(entry.height) != entry.hash:
                path.append(entry)
                entry = self._entry(entry.header.prev_hash)
            path.reverse()
        fork_height = path[0].height - 1 if path else None
        # The descendants of a header new in this batch are new too, so a path that starts at the
        # batch's first header and is as long as the batch is the batch: it extends the chain.
        if path and path[0] is accepted[0] and len(path) == len(accepted):
            side, revived = [], []
        else:
            on_path, new = {id(e) for e in path}, {id(e) for e in accepted}
            side = [e for e in accepted if id(e) not in on_path]
            revived = [e for e in path if id(e) not in new]           # stored on a side branch before
        db = self._db
        if path:
            if fork_height < self._tip.height:
                db.execute("INSERT INTO forks (key, height, raw, chainwork)"
                           " SELECT key, height, raw, chainwork FROM chain WHERE height > ?", (fork_height,))
                db.execute("DELETE FROM chain WHERE height > ?", (fork_height,))
            db.executemany("DELETE FROM forks WHERE key = ? AND raw = ?", [(e.hash[:8], e.raw) for e in revived])
            db.execute(_APPEND, (path[0].height, b"".join([e.hash for e in path]), b"".join([e.raw for e in path]),
                                 b"".join([e.chainwork.to_bytes(32, "big") for e in path]), len(path)))
        db.executemany("INSERT INTO forks VALUES (?, ?, ?, ?)",
                       [(e.hash[:8], e.height, e.raw, _work_bytes(e.chainwork)) for e in side])
        return (fork_height, path) if path else None

    # -- syncing from a source ------------------------------------------------

    def sync_from(self, source: ChainSource, batch: int = 2000, *, now: float | None = None) -> int:
        """Fetch and add the source's headers past the block our chains share; return how many were new."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if source.network != self.network:
            raise ValueError(f"source is on {source.network.label}, this chain on {self.network.label}")
        added = 0
        # A source that reorganises while we read breaks linkage; look for the fork again.
        for _attempt in range(3):
            start = self._fork_point_with(source) + 1
            try:
                while True:
                    raws = source.headers(start, batch)
                    if raws:
                        added += self.add_headers(raws, now=now)
                        start += len(raws)
                    if len(raws) < batch:
                        return added
            except HeaderRejected as exc:
                if exc.rule != "bad-prevblk":
                    raise
        raise SourceError("the source's chain kept changing while headers were read")

    def _fork_point_with(self, source: ChainSource) -> int:
        height = min(self.tip()[0], source.tip().height)
        lowest = max(self._checkpoint_height, height - MAX_FORK_DEPTH)
        while height >= lowest:
            theirs = sha256d(source.header(height))      # no lock held while the source answers
            with self._lock:
                self._follow_file()
                ours = self._active_hash_at(height)
            if theirs == ours:
                return height
            height -= 1
        raise SourceError(f"the source's chain does not meet ours between heights {lowest} and "
                          f"{lowest + MAX_FORK_DEPTH} (different chain, or below our checkpoint)")

    # -- storage and the in-memory cache --------------------------------------

    def _open(self, checkpoint) -> None:
        """Create the tables in a new file (from the checkpoint), migrate a file of the unversioned
        layout, or check that the file is this network's from this checkpoint. One transaction
        under the write lock: another process may be opening the same file."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                for statement in _SCHEMA:
                    db.execute(statement)
                if {"headers", "active"} <= tables:
                    for statement in _MIGRATE_UNVERSIONED:
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            elif version != _SCHEMA_VERSION:
                raise ValueError(f"header file has layout version {version}; this version reads {_SCHEMA_VERSION}")
            stored = dict(db.execute("SELECT key, value FROM meta"))
            if stored:
                self._check_reopen(stored, checkpoint)
            else:
                self._initialise(checkpoint)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _initialise(self, checkpoint) -> None:
        if checkpoint is None:
            genesis = GENESIS_HEADERS[self.network]
            checkpoint = Checkpoint(0, genesis, BlockHeader.parse(genesis).work)
        height, raw, chainwork = checkpoint
        header = BlockHeader.parse(raw)
        if height == 0 and header.hash != PARAMS[self.network].genesis_hash:
            raise ValueError(f"height-0 checkpoint is not the {self.network.label} genesis block")
        header.check_proof_of_work(self.rules.pow_limit_bits)     # catches a mistyped checkpoint
        self.rules.validate_checkpoint(height)
        self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("network", int(self.network)), ("checkpoint_height", height),
                              ("checkpoint_hash", header.hash)])
        self._db.execute("INSERT INTO chain VALUES (?, ?, ?, ?)",
                         (height, header.hash[:8], raw, _work_bytes(chainwork)))

    def _check_reopen(self, stored: dict, checkpoint) -> None:
        if stored["network"] != int(self.network):
            raise ValueError(f"{Network(stored['network']).label} chain file opened as {self.network.label}")
        if checkpoint is not None:
            height, raw = checkpoint[0], checkpoint[1]
            if (height, sha256d(raw)) != (stored["checkpoint_height"], stored["checkpoint_hash"]):
                raise ValueError("chain file was started from a different checkpoint")

    def _follow_file(self) -> None:
        """Reload the in-memory tail if another connection has committed to the file since."""
        if self._shared and self._db.execute("PRAGMA data_version").fetchone()[0] != self._data_version:
            self._load_recent()

    def _load_recent(self) -> None:
        """(Re)build the in-memory tail of the active chain from the database."""
        if self._shared:       # read first: a commit after it is seen by the next _follow_file
            self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        row = self._db.execute("SELECT value FROM meta WHERE key = 'checkpoint_height'").fetchone()
        self._checkpoint_height = row[0]
        (tip_height,) = self._db.execute("SELECT MAX(height) FROM chain").fetchone()
        first = max(self._checkpoint_height, tip_height - RECENT_HEADERS + 1)
        rows = self._db.execute("SELECT raw, chainwork FROM chain WHERE height >= ? ORDER BY height",
                                (first,)).fetchall()
        # Each header names its parent's hash: only the tip's is computed.
        hashes = [raw[4:36] for raw, _ in rows[1:]] + [sha256d(rows[-1][0])]
        self._recent = [_entry_from_row(height, raw, chainwork, block_hash)
                        for height, (raw, chainwork), block_hash in zip(range(first, tip_height + 1), rows, hashes)]
        self._recent_base = first
        self._cache = {entry.hash: entry for entry in self._recent}
        self._tip = self._recent[-1]

    def _move_tip(self, fork_height: int, path: list[_Entry]) -> None:
        if fork_height < self._recent_base - 1:
            self._load_recent()            # a reorg deeper than the cached tail
            return
        del self._recent[fork_height + 1 - self._recent_base:]
        self._recent.extend(path)
        excess = len(self._recent) - RECENT_HEADERS
        if excess > 0:
            del self._recent[:excess]
            self._recent_base += excess
        self._tip = self._recent[-1]

    def _entry(self, block_hash: bytes) -> _Entry | None:
        return self._cache.get(block_hash) or self._read_entry(block_hash)

    def _read_entry(self, block_hash: bytes) -> _Entry | None:
        """A stored header, active or not, found by its hash's key."""
        for height, raw, chainwork in self._db.execute(_BY_KEY, (block_hash[:8],)).fetchall():
            if sha256d(raw) == block_hash:
                return _entry_from_row(height, raw, chainwork, block_hash)
        return None

    def _active_entry(self, height: int) -> _Entry | None:
        if self._recent_base <= height <= self._tip.height:
            return self._recent[height - self._recent_base]
        row = self._db.execute("SELECT raw, chainwork FROM chain WHERE height = ?", (height,)).fetchone()
        return _entry_from_row(height, *row, sha256d(row[0])) if row else None

    def _active_hash_at(self, height: int) -> bytes | None:
        if height > self._tip.height:
            return None
        if height >= self._recent_base:
            return self._recent[height - self._recent_base].hash
        row = self._db.execute("SELECT raw FROM chain WHERE height = ?", (height,)).fetchone()
        return sha256d(row[0]) if row else None

    def _times(self, entry: _Entry) -> tuple[int, ...]:
        """Timestamps of the <= 11 headers ending at ``entry``, oldest first (for MTP)."""
        if entry.times is None:
            times, walk = [], entry
            while walk is not None and len(times) < MEDIAN_TIME_SPAN:
                times.append(walk.header.time)
                walk = None if walk.height == self._checkpoint_height else self._entry(walk.header.prev_hash)
            entry.times = tuple(reversed(times))
        return entry.times

    def close(self) -> None:
        _AFTER_FORK.discard(self)
        self._db.close()

    def _reopen_in_child(self) -> None:
        """After fork (gunicorn forks workers from the master that built the Context): a SQLite
        connection must not cross a fork, and the parent's lock may be held by a thread the
        child does not have. A file-backed chain reopens its file; an in-memory one keeps the
        child's private copy of the data, which no other process can reach."""
        self._lock = threading.RLock()
        if self._shared:
            self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._data_version = None

    def __enter__(self) -> "HeaderChain":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_AFTER_FORK: "weakref.WeakSet[HeaderChain]" = weakref.WeakSet()


def _reopen_all_in_child() -> None:
    for chain in list(_AFTER_FORK):
        chain._reopen_in_child()


os.register_at_fork(after_in_child=_reopen_all_in_child)


def _work_bytes(chainwork: int) -> bytes:
    return chainwork.to_bytes(32, "big")


def _entry_from_row(height: int, raw: bytes, chainwork: bytes, block_hash: bytes) -> _Entry:
    return _Entry(raw, _parse(raw), block_hash, height, int.from_bytes(chainwork, "big"), None)


def default_header_path(network: Network) -> str:
    """Where a network's verified headers persist between runs.

    ``$MILAGRO_HEADERS_DIR`` or ``$XDG_CACHE_HOME/milagro-tls`` (``~/.cache/milagro-tls``), one
    SQLite file per network. Regtest chains are local and differ between data directories
    that share one genesis, so they are kept in memory and synced from their node each time.
    """
    import os
    from pathlib import Path
    if network == Network.REGTEST:
        return ":memory:"
    base = os.environ.get("MILAGRO_HEADERS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "milagro-tls")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return os.path.join(base, f"headers-{network.label}.sqlite")

"""A role's activity log: private leaves, one Merkle root per period, anchored on the role's chain.

* **Leaves** are 32-byte digests that reveal nobody: a receipt leaf is
  SHA256(salt32 ‖ u16be(len ID) ‖ ID ‖ u64be(period)) with a fresh salt that only the user
  gets (``append_receipt``); the canary's leaf is the digest of its signed statement.
  ``append`` commits before it returns: an acknowledged leaf is in the store.
* **Periods** are ``floor(unix_time / period_seconds)``. A leaf goes into the current period
  unless that one is already closed (another worker's clock ran ahead), then into the next.
* **Closing** (``close_due``, run by every worker's background job): a worker claims the oldest
  finished period atomically (FOR UPDATE SKIP LOCKED on PostgreSQL, the write lock on SQLite:
  one worker wins), freezes its leaves, computes the root (milagro_tls.merkle) and anchors it as
  a type-0x03 root through the role's RootAnchorer (identity.rootchain), which chains it after
  the previous root so only the role can anchor one. A worker that dies between claim and
  anchor leaves the period "closing"; after ``stale_after`` seconds another worker claims it
  again (the anchorer returns the same link if the root is already its latest).
* **Inclusion**: ``inclusion(leaf)`` answers with the proof, the root and the root's
  transaction; ``verify_log_inclusion`` (client side) checks the proof against the root and the
  root against the role's anchor chain from its birth anchor (chain.rootchain), so it
  answers against the chain alone: a root anchored by anybody else is refused.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (BigInteger, Column, Float, ForeignKeyConstraint, Index, Integer, LargeBinary, MetaData,
                        String, Table, and_, insert, or_, select, update)
from sqlalchemy.engine import Connection

from ..chain.hashes import to_display_hex
from ..chain.errors import TxNotFound, SourceError
from ..chain.rootchain import RootChainView, RootLink, follow_root_chain
from ..errors import MalformedInput, MilagroError
from ..identity.marker import MarkerType
from ..merkle import InclusionProof, MerkleTree, verify_inclusion
from .store import Store, claim, insert_or_ignore

log = logging.getLogger(__name__)

COMPONENT = "activitylog"
SALT_SIZE = 32
MAX_ID_SIZE = 0xFFFF
_TREE_CACHE = 64             # anchored periods never change: their trees are kept for proofs


class ActivityLogError(MilagroError):
    """The activity log cannot answer (unknown leaf, period not anchored yet)."""


class LeafNotFound(ActivityLogError):
    pass


class LeafNotAnchored(ActivityLogError):
    """The leaf is logged, but its period is not closed and anchored yet."""

    def __init__(self, message: str, period: int, state: str) -> None:
        super().__init__(message)
        self.period, self.state = period, state


def period_of(timestamp: float, period_seconds: int) -> int:
    return int(timestamp // period_seconds)


def receipt_leaf(salt: bytes, subject: bytes | str, period: int) -> bytes:
    """SHA256(salt32 ‖ u16be(len ID) ‖ ID ‖ u64be(period)): the leaf a receipt proves."""
    subject = subject.encode() if isinstance(subject, str) else bytes(subject)
    if len(salt) != SALT_SIZE:
        raise ValueError(f"a receipt salt is {SALT_SIZE} bytes")
    if len(subject) > MAX_ID_SIZE:
        raise ValueError("a receipt ID is at most 65535 bytes")
    if not 0 <= period < 2**64:
        raise ValueError("period out of range")
    return hashlib.sha256(salt + struct.pack(">H", len(subject)) + subject + struct.pack(">Q", period)).digest()


@dataclass(frozen=True, slots=True)
class Appended:
    period: int
    index: int
    leaf: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the user keeps: with it and their ID anyone can recompute the leaf and ask for
    its inclusion proof. The salt is the user's: the log alone links the leaf to nobody."""
    period: int
    index: int
    leaf: bytes
    salt: bytes

    def to_json(self, issuer: str | None = None) -> dict[str, Any]:
        doc = {"period": self.period, "leaf": self.leaf.hex(), "salt": self.salt.hex()}
        if issuer is not None:
            doc["issuer"] = issuer
        return doc


@dataclass(frozen=True, slots=True)
class ClosedPeriod:
    period: int
    size: int
    root: bytes
    txid: bytes          # wire order


class Anchorer(Protocol):
    """What the log needs of identity.rootchain.RootAnchorer."""
    def anchor(self, root_type: int, root: bytes): ...


_metadata = MetaData()
periods = Table(
    "activity_periods", _metadata,
    Column("log", String(64), primary_key=True),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("state", String(16), nullable=False),          # open, closing, anchored
    Column("size", Integer, nullable=False),
    Column("root", LargeBinary(32)),
    Column("txid", LargeBinary(32)),                       # wire order
    Column("block_hash", LargeBinary(32)),                 # wire order, once seen in a block
    Column("claimed_at", Float),
    Column("anchored_at", Float),
)
leaves = Table(
    "activity_leaves", _metadata,
    Column("log", String(64), primary_key=True),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary(32), nullable=False),
    ForeignKeyConstraint(["log", "period"], ["activity_periods.log", "activity_periods.period"]),
    Index("activity_leaves_by_leaf", "log", "leaf"),
)


def _create_tables(connection: Connection) -> None:
    _metadata.create_all(connection, tables=[periods, leaves])


MIGRATIONS = [_create_tables]


class ActivityLog:
    def __init__(self, store: Store, period_seconds: int, anchorer: Anchorer | None, *, name: str = "activity",
                 stale_after: float | None = None, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(period_seconds, int) or period_seconds < 1:
            raise ValueError("period_seconds is a whole number of seconds, at least 1")
        self.store = store
        self.period_seconds = period_seconds
        self.anchorer = anchorer
        self.name = name
        # A claim older than this is taken to belong to a worker that died; anchoring waits on
        # the chain source, so leave it generous.
        self.stale_after = stale_after if stale_after is not None else max(120.0, 2.0 * period_seconds)
        self.clock = clock
        self._trees: OrderedDict[int, MerkleTree] = OrderedDict()
        self._trees_lock = threading.Lock()
        store.migrate(COMPONENT, MIGRATIONS)

    def current_period(self, now: float | None = None) -> int:
        return period_of(self.clock() if now is None else now, self.period_seconds)

    # --- appending ----------------------------------------------------------------------
    def append(self, leaf: bytes | Callable[[int], bytes], *, connection: Connection | None = None,
               now: float | None = None) -> Appended:
        """Add a leaf to the current open period; committed before returning (or, given a
        ``connection``, part of the caller's transaction). ``leaf`` may be a function of the
        period (receipts and canaries commit to it)."""
        if connection is None:
            with self.store.begin() as connection:
                return self._append(connection, leaf, now)
        return self._append(connection, leaf, now)

    def append_receipt(self, subject: bytes | str, *, connection: Connection | None = None,
                       now: float | None = None) -> Receipt:
        salt = os.urandom(SALT_SIZE)
        appended = self.append(lambda period: receipt_leaf(salt, subject, period), connection=connection, now=now)
        return Receipt(appended.period, appended.index, appended.leaf, salt)

    def _append(self, connection: Connection, leaf, now: float | None) -> Appended:
        period = self.current_period(now)
        while True:
            insert_or_ignore(connection, periods, {"log": self.name, "period": period, "state": "open", "size": 0})
            # The row lock (PostgreSQL) orders appenders of one period and the closer's claim;
            # SQLite's write lock already does.
            row = connection.execute(select(periods.c.state, periods.c.size)
                                     .where(periods.c.log == self.name, periods.c.period == period)
                                     .with_for_update()).one()
            if row.state == "open":
                break
            period += 1
        data = leaf(period) if callable(leaf) else leaf
        if not isinstance(data, bytes) or len(data) != 32:
            raise ValueError("an activity-log leaf is a 32-byte digest")
        connection.execute(insert(leaves).values(log=self.name, period=period, idx=row.size, leaf=data))
        connection.execute(update(periods).where(periods.c.log == self.name, periods.c.period == period)
                           .values(size=row.size + 1))
        return Appended(period, row.size, data)

    # --- closing ------------------------------------------------------------------------
    def close_due(self, now: float | None = None) -> list[ClosedPeriod]:
        """Close and anchor every finished period no other worker is closing; returns those
        this call anchored. Safe to call from every worker at any time."""
        if self.anchorer is None:
            raise ActivityLogError("this log has no anchorer: it cannot close periods")
        now = self.clock() if now is None else now
        closed = []
        while (claimed := self._claim(now)) is not None:
            period, size, root = claimed
            link = self.anchorer.anchor(MarkerType.ACTIVITY_LOG_ROOT, root)
            with self.store.begin() as connection:
                connection.execute(update(periods).where(periods.c.log == self.name, periods.c.period == period,
                                                         periods.c.state == "closing")
                                   .values(state="anchored", txid=link.txid, anchored_at=self.clock()))
            log.info("activity log %s: period %d (%d leaves) anchored in %s", self.name, period, size,
                     to_display_hex(link.txid))
            closed.append(ClosedPeriod(period, size, root, link.txid))
        return closed

    def _claim(self, now: float) -> tuple[int, int, bytes] | None:
        due = self.current_period(now)
        with self.store.begin() as connection:
            rows = claim(connection, select(periods.c.period, periods.c.state).where(
                periods.c.log == self.name, periods.c.period < due,
                or_(periods.c.state == "open",
                    and_(periods.c.state == "closing", periods.c.claimed_at < now - self.stale_after)))
                .order_by(periods.c.period).limit(1))
            if not rows:
                return None
            period = rows[0].period
            data = list(connection.execute(select(leaves.c.leaf).where(leaves.c.log == self.name,
                                                                       leaves.c.period == period)
                                           .order_by(leaves.c.idx)).scalars())
            root = MerkleTree(data).root
            connection.execute(update(periods).where(periods.c.log == self.name, periods.c.period == period)
                               .values(state="closing", claimed_at=now, size=len(data), root=root))
        return period, len(data), root

    # --- answering ----------------------------------------------------------------------
    def inclusion(self, leaf: bytes) -> dict[str, Any]:
        """The inclusion-proof document for ``leaf``: period, index, size, path, root, txid,
        block_hash (display hex; None until the source shows the root's transaction mined).
        LeafNotFound, or LeafNotAnchored while its period is open or being anchored."""
        with self.store.read() as connection:
            found = connection.execute(select(leaves.c.period, leaves.c.idx)
                                       .where(leaves.c.log == self.name, leaves.c.leaf == leaf)
                                       .order_by(leaves.c.period, leaves.c.idx).limit(1)).first()
            if found is None:
                raise LeafNotFound(f"leaf {leaf.hex()} is not in the {self.name} log")
            row = connection.execute(select(periods).where(periods.c.log == self.name,
                                                           periods.c.period == found.period)).one()
            if row.state != "anchored":
                raise LeafNotAnchored(f"period {row.period} is {row.state}: not anchored yet", row.period, row.state)
            tree = self._tree(connection, row.period)
        block_hash = row.block_hash or self._block_hash(row.period, row.txid)
        proof = tree.inclusion_proof(found.idx)
        return {"period": row.period, "leaf": leaf.hex(), **proof.to_json(), "root": row.root.hex(),
                "txid": to_display_hex(row.txid), "block_hash": to_display_hex(block_hash) if block_hash else None}

    def _tree(self, connection: Connection, period: int) -> MerkleTree:
        with self._trees_lock:
            if period in self._trees:
                self._trees.move_to_end(period)
                return self._trees[period]
        data = list(connection.execute(select(leaves.c.leaf).where(leaves.c.log == self.name,
                                                                   leaves.c.period == period)
                                       .order_by(leaves.c.idx)).scalars())
        tree = MerkleTree(data)
        with self._trees_lock:
            self._trees[period] = tree
            while len(self._trees) > _TREE_CACHE:
                self._trees.popitem(last=False)
        return tree

    def _block_hash(self, period: int, txid: bytes) -> bytes | None:
        source = getattr(self.anchorer, "source", None)
        if source is None:
            return None
        try:
            block_hash = source.tx_status(txid).block_hash
        except (TxNotFound, SourceError):
            return None
        if block_hash is not None:
            with self.store.begin() as connection:
                connection.execute(update(periods).where(periods.c.log == self.name, periods.c.period == period)
                                   .values(block_hash=block_hash))
        return block_hash

    def period(self, period: int) -> dict[str, Any] | None:
        """A period's public state (None if nothing was logged in it)."""
        with self.store.read() as connection:
            row = connection.execute(select(periods).where(periods.c.log == self.name,
                                                           periods.c.period == period)).first()
        if row is None:
            return None
        return {"period": row.period, "state": row.state, "size": row.size,
                "root": row.root.hex() if row.root else None,
                "txid": to_display_hex(row.txid) if row.txid else None}


class PeriodicJobs:
    """A worker's background thread: closes due periods (and re-signs the canary) every
    ``interval`` seconds. Every gunicorn worker runs one; the claims make that safe."""

    def __init__(self, log_: ActivityLog, *, canary=None, interval: float | None = None) -> None:
        self.log = log_
        self.canary = canary
        self.interval = interval if interval is not None else max(1.0, min(30.0, log_.period_seconds / 4))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        if self.canary is not None:
            self.canary.current()
        if self.log.anchorer is not None:
            self.log.close_due()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception as error:          # logged and retried next tick; never fatal to the worker
                log.warning("activity log %s: background job failed: %s: %s", self.log.name,
                            type(error).__name__, error)

    def start(self) -> "PeriodicJobs":
        self._thread = threading.Thread(target=self._loop, name=f"activitylog-{self.log.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


# --- the client's side ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerifiedInclusion:
    period: int
    index: int
    root: bytes
    link: RootLink                 # the role's anchored link carrying the root
    view: RootChainView            # pass as ``previous`` to the next verification


_DOC_FIELDS = {"period", "leaf", "index", "size", "path", "root", "txid", "block_hash"}


def verify_log_inclusion(doc: Any, leaf: bytes, identity, birth_tx: bytes, source, headers, *,
                         min_confirmations: int = 1, previous: RootChainView | None = None) -> VerifiedInclusion:
    """Check an inclusion document (``ActivityLog.inclusion``) for ``leaf`` against the chain:
    the proof against its root (MerkleProofError), the root against the role's type-0x03
    anchor chain from its birth anchor (RootNotInChain for a root the role did not anchor,
    whoever anchored it; RootChainError and other VerificationErrors for bad links).
    ``identity`` is the role's verified PeerIdentity, ``birth_tx`` its anchor (``proof.tx``)."""
    if not isinstance(doc, dict) or set(doc) != _DOC_FIELDS:
        raise MalformedInput(f"an inclusion document has exactly the fields {sorted(_DOC_FIELDS)}")
    if type(doc["period"]) is not int or doc["period"] < 0:
        raise MalformedInput("inclusion document period is not a non-negative integer")
    try:
        claimed_leaf, root = bytes.fromhex(doc["leaf"]), bytes.fromhex(doc["root"])
    except (TypeError, ValueError):
        raise MalformedInput("inclusion document leaf/root is not hex") from None
    if len(root) != 32:
        raise MalformedInput("inclusion document root is not 32 bytes")
    if claimed_leaf != leaf:
        raise MalformedInput("the inclusion document is for another leaf")
    proof = InclusionProof.from_json({"index": doc["index"], "size": doc["size"], "path": doc["path"]})
    verify_inclusion(leaf, proof, root)
    view = follow_root_chain(identity, birth_tx, MarkerType.ACTIVITY_LOG_ROOT, source, headers,
                             min_confirmations=min_confirmations, previous=previous)
    link = view.find(root)
    return VerifiedInclusion(doc["period"], proof.index, root, link, view)


"""Revoking the TBS's batch-anchored PATs (issue 18): the revoked set in the store, its lists
anchored on the TBS's REVOCATION_LIST_ROOT (0x04) chain, and the answer for one digest.

A batch PAT has no seal to spend, so the TBS keeps a growing set of revoked certificate digests
(``BirthCertificate.digest()``, tables.revocations) and anchors the **whole** set, as a list
(chain.revocation_list: sorted leaves, milagro_tls.merkle root), as the next link of its 0x04
chain through the worker's RootAnchorer. List ``n`` is link ``n`` of that chain: nothing else
anchors on it (the activity log has its own 0x03 chain).

Anchoring (``RevocationLists.anchor_due``, every worker's batch thread runs it):

    revocations with list_number NULL exist, and the newest list is anchored (or none yet)
      ──claim: insert_or_ignore(tbs_revocation_lists number n+1, "anchoring", root of every
        digest) and mark those rows list_number = n+1, in one transaction: one worker wins──▶
    RootAnchorer.anchor(REVOCATION_LIST_ROOT, root) ──▶ "anchored", txid (display hex)

A list is claimed only once the one before it is anchored, so links are anchored in list order.
A worker that dies after its claim leaves the list "anchoring"; once its claim is older than
the lease another worker anchors **the same root** again (RootAnchorer returns, or re-sends, the
link a crash left pending, and builds it only if it never was). "Anchored" means sent: the link
may still be in the mempool, which is where a verifier's "current list" starts to count it.

Answering (``RevocationLists.answer``, served as GET /chain/revocation/<digest>): a digest in
the store is revoked, anchored or not yet (the TBS's word); any other gets a non-membership
proof against the newest anchored list (the empty list, and no link, before the first one).

Refusing (``OwnPatRevocations``, the TBS's own serving Context's ``batch_revocation``): a PAT
of this TBS (its certificate names our batching key) whose digest is in the store fails its
handshake with the TBS with certificate_revoked (44), anchored or not yet: the TBS asks its own
store, not itself over tbs://. Its MAC-authenticated enrolment endpoints (anonymous handshake)
still answer 403 pat_revoked.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select, update

from ...chain.errors import AnchorRevoked
from ...chain.hashes import from_display_hex, to_display_hex
from ...chain.revocation_list import revocation_list_root
from ...identity.certificate import BirthCertificate
from ...identity.marker import MarkerType
from ..store import Store, insert_or_ignore, open_store
from .groups import TbsError
from .tables import enrolments, revocation_lists, revocations

log = logging.getLogger(__name__)

MAX_REASON = 500
ANCHORING, ANCHORED = "anchoring", "anchored"
_LEAVES_CACHE = 4
_MARK_CHUNK = 500


def parse_digest(text: Any) -> bytes:
    """A certificate digest given as 64 hex characters."""
    try:
        digest = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise TbsError(400, "invalid_digest", "a certificate digest is 64 hex characters (SHA256)")
    return digest


def digest_of_pat(store: Store, name: str) -> bytes:
    """The certificate digest of the enrolled PAT named ``name`` (its certificate's name)."""
    found = []
    with store.read() as connection:
        for row in connection.execute(select(enrolments.c.digest, enrolments.c.certificate)
                                      .where(enrolments.c.certificate.contains(name))):
            if BirthCertificate.parse(row.certificate.encode()).name == name:
                found.append(row.digest)
    if not found:
        raise TbsError(404, "unknown_pat", f"no PAT named {name!r} is enrolled here")
    if len(found) > 1:
        raise TbsError(409, "ambiguous_pat", f"{len(found)} enrolled certificates are named {name!r}: "
                                             "revoke by --digest")
    return found[0]


def revoke(store: Store, digest: bytes, reason: str = "", *, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Record ``digest`` as revoked (idempotent: the first revocation's time and reason stay).
    Committed before it returns; the next list anchored names it."""
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise TbsError(400, "invalid_digest", "a certificate digest is 32 bytes")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise TbsError(400, "invalid_reason", f"a reason is text of at most {MAX_REASON} characters")
    with store.begin() as connection:
        new = insert_or_ignore(connection, revocations, {"digest": digest, "revoked_at": clock(), "reason": reason,
                                                         "list_number": None})
        row = connection.execute(select(revocations).where(revocations.c.digest == digest)).one()
        known = connection.scalar(select(func.count()).select_from(enrolments)
                                  .where(enrolments.c.digest == digest))
    if new:
        log.info("certificate %s revoked (%s)", digest.hex(), reason or "no reason given")
    return {"digest": digest.hex(), "revoked": True, "new": new, "revoked_at": row.revoked_at,
            "reason": row.reason, "list_number": row.list_number, "enrolled_here": bool(known)}


def is_revoked(connection, digest: bytes) -> bool:
    return connection.scalar(select(revocations.c.digest).where(revocations.c.digest == digest)) is not None


class RevocationLists:
    """The TBS's lists: anchoring (``anchor_due``) and answering (``answer``).

    ``anchorer`` is the worker's RootAnchorer (None: answering only, as the CLI does)."""

    def __init__(self, store: Store, anchorer=None, *, lease: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.anchorer = anchorer
        self.lease = lease
        self.clock = clock
        # An anchored list never changes: its sorted leaves are kept for the proofs.
        self._leaves: OrderedDict[int, tuple[bytes, ...]] = OrderedDict()
        self._lock = threading.Lock()

    # --- anchoring ------------------------------------------------------------------------
    def anchor_due(self) -> int | None:
        """Anchor the next list if one is due (or a stale claim's); the list number anchored
        by this call, or None. Safe to call from every worker at any time."""
        if self.anchorer is None:
            raise TbsError(500, "server_error", "these revocation lists have no anchorer")
        claimed = self._claim()
        if claimed is None:
            return None
        number, root = claimed
        link = self.anchorer.anchor(MarkerType.REVOCATION_LIST_ROOT, root)
        with self.store.begin() as connection:
            connection.execute(update(revocation_lists).where(revocation_lists.c.number == number,
                                                              revocation_lists.c.state == ANCHORING)
                               .values(state=ANCHORED, txid=to_display_hex(link.txid), anchored_at=self.clock()))
        log.info("revocation list %d (root %s) anchored in %s", number, root.hex(), to_display_hex(link.txid))
        return number

    def _claim(self) -> tuple[int, bytes] | None:
        now = self.clock()
        with self.store.begin() as connection:
            newest = connection.execute(select(revocation_lists).order_by(revocation_lists.c.number.desc())
                                        .limit(1).with_for_update()).first()
            if newest is not None and newest.state == ANCHORING:
                if newest.claimed_at >= now - self.lease:
                    return None                     # another worker is anchoring it
                taken = connection.execute(update(revocation_lists).where(
                    revocation_lists.c.number == newest.number, revocation_lists.c.state == ANCHORING,
                    revocation_lists.c.claimed_at == newest.claimed_at).values(claimed_at=now))
                if taken.rowcount != 1:
                    return None
                log.warning("revocation list %d: its worker stopped before anchoring it; anchoring the same root",
                            newest.number)
                return newest.number, newest.root
            rows = list(connection.execute(select(revocations.c.digest, revocations.c.list_number)))
            unlisted = [row.digest for row in rows if row.list_number is None]
            if not unlisted:
                return None
            number = (newest.number if newest is not None else 0) + 1
            root = revocation_list_root(row.digest for row in rows)
            if not insert_or_ignore(connection, revocation_lists, {"number": number, "root": root, "state": ANCHORING,
                                                                   "created_at": now, "claimed_at": now}):
                return None                         # another worker claimed it
            # Only the digests this root covers (a revocation committed meanwhile waits for n+2).
            for start in range(0, len(unlisted), _MARK_CHUNK):
                connection.execute(update(revocations).where(revocations.c.digest.in_(unlisted[start:start + _MARK_CHUNK]),
                                                             revocations.c.list_number.is_(None))
                                   .values(list_number=number))
        return number, root

    # --- answering ------------------------------------------------------------------------
    def newest_anchored(self) -> tuple[int, bytes, bytes] | None:
        """(number, root, txid wire order) of the newest anchored list, None before the first."""
        with self.store.read() as connection:
            row = connection.execute(select(revocation_lists).where(revocation_lists.c.state == ANCHORED)
                                     .order_by(revocation_lists.c.number.desc()).limit(1)).first()
        return None if row is None else (row.number, row.root, from_display_hex(row.txid))

    def leaves(self, number: int, root: bytes) -> tuple[bytes, ...]:
        """The sorted digests of list ``number`` (every digest listed by it or an earlier one),
        checked once against the list's anchored ``root``."""
        with self._lock:
            if number in self._leaves:
                self._leaves.move_to_end(number)
                return self._leaves[number]
        with self.store.read() as connection:
            digests = tuple(sorted(connection.execute(select(revocations.c.digest).where(
                revocations.c.list_number <= number)).scalars()))
        if revocation_list_root(digests) != root:
            raise TbsError(500, "server_error", f"revocation list {number} in the store does not match its root")
        with self._lock:
            self._leaves[number] = digests
            while len(self._leaves) > _LEAVES_CACHE:
                self._leaves.popitem(last=False)
        return digests

    def answer(self, digest: bytes):
        """The RevocationAnswer for ``digest`` (chain.revocation_list.answer_for)."""
        from ...chain.revocation_list import answer_for
        with self.store.read() as connection:
            revoked = is_revoked(connection, digest)
        newest = self.newest_anchored()
        if newest is None:
            return answer_for((), {digest} if revoked else (), digest, None)
        number, root, txid = newest
        return answer_for(self.leaves(number, root), {digest} if revoked else (), digest, (txid, number))


# --- the TBS's own handshakes ------------------------------------------------------------------
#: The worker's own store (``share_worker_store``), with the pid that opened it.
_worker_store: tuple[int, str, str | None, Store] | None = None


def share_worker_store(home: str | os.PathLike, db: str | None, store: Store) -> None:
    """Called by the worker's app (service.worker_app) with the store it opened: this process's
    OwnPatRevocations for the same home and database use it rather than opening another.

    Not only one pool per worker: opening a second store on a SQLite file this process already
    has open (open_store opens and closes the file first) drops every POSIX lock the process
    holds on it, SQLite's documented way to corrupt a database. Other processes then take
    themselves for the last connection, checkpoint and delete the WAL, and this process's later
    commits go to the unlinked WAL: nobody else sees them until the worker exits."""
    global _worker_store
    _worker_store = (os.getpid(), str(Path(home).resolve()), db, store)


class OwnPatRevocations:
    """A chain.revocation BatchChecker for the TBS's own serving Context: a batch-anchored PAT
    naming this TBS's batching key (``batch_key_xonly``) is refused (AnchorRevoked: alert
    certificate_revoked) when its certificate digest is in tbs_revocations, anchored in a list
    or not yet. The store's word, which is the TBS's own: no list proof is needed here.

    The Context is built in gunicorn's master before the fork, so the store (``db``, or SQLite
    in ``home``) is found lazily, once per process (pid-checked): the worker's own, shared by
    its app (``share_worker_store``; gunicorn loads the app before a worker accepts), else one
    opened here. No process uses a connection another holds; the master never handshakes, so
    it never opens one."""

    def __init__(self, home: str | os.PathLike, db: str | None, batch_key_xonly: bytes) -> None:
        if not isinstance(batch_key_xonly, bytes) or len(batch_key_xonly) != 32:
            raise ValueError("the batching key is a 32-byte x-only key")
        self.home, self.db, self.batch_key = home, db, batch_key_xonly
        self._store: Store | None = None
        self._owned = False
        self._pid = 0
        self._lock = threading.Lock()

    def covers(self, identity) -> bool:
        """Whether ``identity`` is a batch-anchored PAT of this TBS."""
        return identity.seal is None and identity.certificate.batch_key == self.batch_key

    def store(self) -> Store:
        pid = os.getpid()
        with self._lock:
            if self._store is None or self._pid != pid:
                # A parent's store is left alone (its connections are the parent's).
                shared = _worker_store
                if shared is not None and shared[:3] == (pid, str(Path(self.home).resolve()), self.db):
                    self._store, self._owned = shared[3], False
                else:
                    self._store, self._owned = open_store(self.db, Path(self.home)), True
                self._pid = pid
            return self._store

    def __call__(self, identity) -> None:
        digest = identity.certificate.digest()
        with self.store().read() as connection:
            revoked = is_revoked(connection, digest)
        if revoked:
            log.info("PAT %r (certificate %s) refused: revoked by this TBS", identity.name, digest.hex())
            raise AnchorRevoked(f"{identity.name!r} (certificate {digest.hex()}) is revoked by this TBS "
                                "(its own store)")

    def close(self) -> None:
        with self._lock:
            if self._store is not None and self._owned and self._pid == os.getpid():
                self._store.close()
            self._store = None


# --- the trust entries' seals -------------------------------------------------------------------
def seal_of(entry) -> tuple[bytes, int] | None:
    """The seal outpoint of an instruction trust entry (enrolment.InstructionTrust): the output
    of its anchor paying its identity key, as chain.verify finds it. None for a batch-anchored
    entry (no seal: its own TBS revokes it) or an anchor without one (it would not verify)."""
    from ...chain.sighash import p2wpkh_script
    from ...chain.tx import parse_tx
    from ...identity.locator import LocatorKind
    if entry.locator.kind != LocatorKind.P2WPKH:
        return None
    script = p2wpkh_script(entry.certificate.pubkey)
    tx = parse_tx(entry.proof.tx)
    vout = next((i for i, out in enumerate(tx.vout) if out.script_pubkey.data == script), None)
    return None if vout is None else (entry.locator.txid, vout)


class SealStatus:
    """Whether a trust entry's seal is spent: **the TBS's chain source's word**, as
    chain.revocation.seal_spender asks it (mempool included), kept ``ttl`` seconds per seal so
    a burst of instruction fetches asks once. SourceError propagates (the caller refuses)."""

    def __init__(self, source, *, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.source, self.ttl, self.clock = source, ttl, clock
        self._known: dict[tuple[bytes, int], tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def spender(self, seal: tuple[bytes, int]) -> bytes | None:
        now = self.clock()
        with self._lock:
            known = self._known.get(seal)
            if known is not None and now - known[0] < self.ttl:
                return known[1]
        spender = self.source.outspend_unverified(*seal)
        with self._lock:
            if len(self._known) > 4096:
                self._known.clear()
            self._known[seal] = (now, spender)
        return spender

    def entries(self, trust) -> tuple[list, list]:
        """(the entries whose seal is unspent or that have none, an EntrySeal for every entry
        with a seal)."""
        from ...enrolment.instructions import EntrySeal
        kept, status = [], []
        for entry in trust:
            seal = seal_of(entry)
            if seal is None:
                kept.append(entry)
                continue
            spender = self.spender(seal)
            status.append(EntrySeal(entry.name, spender is not None, spender))
            if spender is None:
                kept.append(entry)
            else:
                log.info("trust entry %r left out of the instructions: its seal is spent by %s (the source's word)",
                         entry.name, to_display_hex(spender))
        return kept, status

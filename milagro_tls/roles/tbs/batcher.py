"""The batch worker: every state change of a batch and its enrolments is a committed store
write, so any worker, or the same one after SIGKILL, resumes from the store alone.

    queued/requeued ──claim (FOR UPDATE SKIP LOCKED)──▶ batched, batch "opening"
    opening  ──persist hook (before the wallet records the funding)──▶ "signing"
             (an "opening" batch whose lease ran out was never funded: members back to the queue)
    signing  ──all signed, or --batch-wait elapsed──▶ "finishing" ──broadcast──▶ "sent"
             (nobody signed: the funding is reclaimed through the key path ▶ "reclaimed")
    sent     ──confirmed with --min-confirmations──▶ "settled": signed slots anchored (locator,
             the batch's AnchorProof, an activity-log receipt), empty slots requeued

A batch is opened when ``max_batch`` PATs wait, or when the oldest has waited ``gather``
seconds. A PAT that never answers is requeued after each batch and given up ("failed") after
``max_attempts`` batches, so a certificate nobody can sign for (someone else's key) cannot
hold slots forever. On regtest the TBS never mines: tests and the demo do.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import and_, func, or_, select, update

from ...chain.errors import TxNotFound
from ...chain.hashes import to_display_hex
from ...chain.proof import fetch_anchor_proof
from ...chain.tx import parse_tx, txid_of
from ...identity.anchor import BuiltTx
from ...identity.batch import BatchAssembler, PendingBatch
from ...identity.certificate import BirthCertificate
from ...identity.party import spent_value_of
from ..activitylog import ActivityLog
from ..dta.peer import locator_key
from ..store import Store, claim
from .enrolments import ANCHORED, BATCHED, FAILED, REQUEUED, WAITING, PendingBatches
from .tables import batches, enrolments, signatures

log = logging.getLogger(__name__)


@dataclass
class BatchPolicy:
    max_batch: int = 128
    gather: float = 2.0             # seconds the oldest waiting PAT waits for company
    batch_wait: float = 30.0        # seconds a batch waits for signatures
    min_confirmations: int = 1
    lease: float = 60.0             # a worker silent this long on a batch is taken to be dead
    max_attempts: int = 5


class Batcher:
    def __init__(self, store: Store, assembler: BatchAssembler, source, activity: ActivityLog | None,
                 policy: BatchPolicy | None = None, *, pending: PendingBatches | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.assembler = assembler
        self.source = source
        self.activity = activity
        self.policy = policy or BatchPolicy()
        self.pending = pending or PendingBatches()
        self.clock = clock
        # After a batch could not be funded (an empty wallet, a source down), opening waits a
        # little longer each time instead of retrying every pass.
        self._open_not_before = 0.0
        self._fund_failures = 0

    def run_once(self) -> None:
        """One pass over everything due; each step claims its rows, so every worker may run it."""
        self.settle_sent()
        self.finish_due()
        self.release_stale_openings()
        while self.open_next() is not None:
            pass

    # --- opening --------------------------------------------------------------------------
    def open_next(self) -> int | None:
        """Claim waiting enrolments and fund a batch for them; the batch id, or None if none is due."""
        policy, now = self.policy, self.clock()
        if now < self._open_not_before:
            return None
        waiting = and_(enrolments.c.state.in_(WAITING))
        with self.store.begin() as connection:
            oldest, count = connection.execute(select(func.min(enrolments.c.queued_at), func.count())
                                               .where(waiting)).one()
            if oldest is None or (count < policy.max_batch and now - oldest < policy.gather):
                return None
            rows = claim(connection, select(enrolments.c.id, enrolments.c.certificate, enrolments.c.attempts)
                         .where(waiting).order_by(enrolments.c.queued_at, enrolments.c.id)
                         .limit(policy.max_batch), of=enrolments)
            members, keys = [], set()
            for row in rows:
                certificate = BirthCertificate.parse(row.certificate.encode())
                if certificate.pubkey[1:] in keys:
                    continue            # one slot per key and batch: the other waits for the next
                keys.add(certificate.pubkey[1:])
                members.append((row, certificate))
            if not members:
                return None
            batch_id = connection.execute(batches.insert().values(
                state="opening", size=len(members), lease_until=now + policy.lease, created_at=now)
            ).inserted_primary_key[0]
            for position, (row, _) in enumerate(members):
                connection.execute(update(enrolments).where(enrolments.c.id == row.id).values(
                    state=BATCHED, batch_id=batch_id, position=position, attempts=row.attempts + 1, updated_at=now))
        self._fund(batch_id, [certificate for _, certificate in members])
        return batch_id

    def _fund(self, batch_id: int, certificates: list[BirthCertificate]) -> None:
        persisted: list[PendingBatch] = []

        def persist(batch: PendingBatch) -> None:
            # Committed before the wallet records the funding: a crash after this point leaves a
            # batch the store knows how to finish (or reclaim); before it, nothing was spent.
            with self.store.begin() as connection:
                connection.execute(update(batches).where(batches.c.id == batch_id, batches.c.state == "opening")
                                   .values(state="signing", pending=json.dumps(batch.to_json()), txid=batch.txid,
                                           funding_txid=batch.funding.txid, signing_since=self.clock(),
                                           lease_until=self.clock() + self.policy.lease))
            persisted.append(batch)

        try:
            self.assembler.open(certificates, persist=persist)
        except Exception:
            if not persisted:
                self._requeue_members(batch_id, "abandoned", "the batch could not be funded", offered=False)
                self._fund_failures += 1
                self._open_not_before = self.clock() + min(60.0, 2.0 ** self._fund_failures)
            raise
        self._fund_failures = 0
        log.info("batch %d: %d PATs, txid %s", batch_id, len(certificates), to_display_hex(persisted[0].txid))

    def _requeue_members(self, batch_id: int, batch_state: str, why: str, *, offered: bool) -> None:
        """The batch ends as ``batch_state`` without anchoring anyone: its members wait again,
        except (when they were ``offered`` a slot) those out of attempts, who are given up."""
        now = self.clock()
        members = and_(enrolments.c.batch_id == batch_id, enrolments.c.state == BATCHED)
        with self.store.begin() as connection:
            connection.execute(update(batches).where(batches.c.id == batch_id).values(state=batch_state, lease_until=now))
            if offered:
                connection.execute(update(enrolments).where(members, enrolments.c.attempts >= self.policy.max_attempts)
                                   .values(state=FAILED, position=None, updated_at=now))
            connection.execute(update(enrolments).where(members)
                               .values(state=REQUEUED, batch_id=None, position=None, queued_at=now, updated_at=now))
        log.warning("batch %d %s: %s; its PATs are queued again", batch_id, batch_state, why)

    def release_stale_openings(self) -> None:
        """An "opening" batch whose lease ran out: its worker died before the persist hook, so
        the wallet never recorded (nor sent) its funding. Its members go back to the queue."""
        now = self.clock()
        with self.store.begin() as connection:
            stale = [row.id for row in claim(connection, select(batches.c.id).where(
                batches.c.state == "opening", batches.c.lease_until < now), of=batches)]
            for batch_id in stale:
                connection.execute(update(batches).where(batches.c.id == batch_id)
                                   .values(state="abandoned", lease_until=now))
                connection.execute(update(enrolments).where(enrolments.c.batch_id == batch_id,
                                                            enrolments.c.state == BATCHED)
                                   .values(state=REQUEUED, batch_id=None, position=None, queued_at=now,
                                           updated_at=now))
        for batch_id in stale:
            log.warning("batch %d was never funded (its worker stopped): its PATs are queued again", batch_id)

    # --- finishing ------------------------------------------------------------------------
    def _load(self, connection, batch_id: int, pending_json: str) -> PendingBatch:
        """A fresh PendingBatch (signatures are per call) with the stored signatures."""
        batch = PendingBatch.from_json(json.loads(pending_json))
        for row in connection.execute(select(signatures.c.position, signatures.c.signature)
                                      .where(signatures.c.batch_id == batch_id)):
            batch.signatures[row.position] = row.signature
        return batch

    def finish_due(self) -> None:
        now = self.clock()
        signed = (select(func.count()).select_from(signatures)
                  .where(signatures.c.batch_id == batches.c.id).scalar_subquery())
        due = or_(and_(batches.c.state == "signing",
                       or_(batches.c.signing_since <= now - self.policy.batch_wait, signed >= batches.c.size)),
                  and_(batches.c.state == "finishing", batches.c.lease_until < now))
        while True:
            with self.store.begin() as connection:
                rows = claim(connection, select(batches.c.id, batches.c.pending).where(due)
                             .order_by(batches.c.id).limit(1), of=batches)
                if not rows:
                    return
                batch_id = rows[0].id
                connection.execute(update(batches).where(batches.c.id == batch_id)
                                   .values(state="finishing", lease_until=now + self.policy.lease))
                batch = self._load(connection, batch_id, rows[0].pending)
            self._finish(batch_id, batch)

    def _ensure_funding_sent(self, batch: PendingBatch) -> None:
        """After a crash between the persist hook and the wallet's record, the funding was never
        recorded nor sent: record and send it now (the wallet's word on its inputs' value)."""
        try:
            self.source.tx_status(batch.funding.txid)
            return
        except TxNotFound:
            pass
        wallet = self.assembler.wallet
        if wallet.recorded(batch.funding.txid) is None:
            wallet.track(BuiltTx(batch.funding.raw, txid_of(parse_tx(batch.funding.raw))),
                         spent_value=spent_value_of(self.source, batch.funding.raw), label="batch funding (resumed)")
        wallet.send(batch.funding.txid)

    def _finish(self, batch_id: int, batch: PendingBatch) -> None:
        now = self.clock()
        try:
            self._ensure_funding_sent(batch)
            if not batch.signatures:
                built = self.assembler.reclaim(batch)
                log.info("batch %d: nobody signed; funding reclaimed in %s", batch_id, built.txid_hex)
                self._requeue_members(batch_id, "reclaimed", "nobody signed", offered=True)
                return
            built = self.assembler.finish(batch)
        except Exception:
            log.exception("batch %d: finishing failed; retried when its lease runs out", batch_id)
            return
        with self.store.begin() as connection:
            connection.execute(update(batches).where(batches.c.id == batch_id, batches.c.state == "finishing")
                               .values(state="sent", sent_at=now, lease_until=now))
        log.info("batch %d sent: %s (%d of %d signed)", batch_id, built.txid_hex, len(batch.signatures),
                 len(batch.certificates))

    # --- settling -------------------------------------------------------------------------
    def settle_sent(self) -> None:
        with self.store.read() as connection:
            sent = list(connection.execute(select(batches.c.id, batches.c.pending)
                                           .where(batches.c.state == "sent").order_by(batches.c.id)))
        for row in sent:
            try:
                self._settle(row.id, self.pending.get(row.id, row.pending))
            except Exception:
                log.exception("batch %d: settling failed; retried on the next pass", row.id)

    def _settle(self, batch_id: int, batch: PendingBatch) -> bool:
        outcome = self.assembler.settle(batch, self.source)
        if outcome is None:
            return False
        depth = self.source.tip().height - outcome.height + 1
        if depth < self.policy.min_confirmations:
            return False
        proof = fetch_anchor_proof(self.source, outcome.txid, outcome.block_hash, outcome.height)
        now = self.clock()
        with self.store.begin() as connection:
            if not claim(connection, select(batches.c.id).where(batches.c.id == batch_id,
                                                                 batches.c.state == "sent"), of=batches):
                return False                 # another worker settled it
            for certificate in outcome.anchored:
                digest = certificate.digest()
                locator = outcome.locators[digest]
                receipt = self.activity.append_receipt(digest, connection=connection) if self.activity else None
                connection.execute(update(enrolments).where(enrolments.c.digest == digest,
                                                            enrolments.c.batch_id == batch_id).values(
                    state=ANCHORED, locator=json.dumps(locator.to_json()), locator_key=locator_key(locator),
                    receipt_salt=receipt.salt if receipt else None, receipt_period=receipt.period if receipt else None,
                    updated_at=now))
            for certificate in outcome.requeue:
                row = connection.execute(select(enrolments.c.id, enrolments.c.attempts).where(
                    enrolments.c.digest == certificate.digest(), enrolments.c.batch_id == batch_id)).first()
                if row is None:
                    continue
                given_up = row.attempts >= self.policy.max_attempts
                connection.execute(update(enrolments).where(enrolments.c.id == row.id).values(
                    state=FAILED if given_up else REQUEUED, batch_id=batch_id if given_up else None,
                    position=None, queued_at=now, updated_at=now))
            connection.execute(update(batches).where(batches.c.id == batch_id).values(
                state="settled", block_hash=outcome.block_hash, height=outcome.height, proof=proof.encode(),
                settled_at=now))
        log.info("batch %d settled in block %s: %d anchored, %d requeued", batch_id,
                 to_display_hex(outcome.block_hash), len(outcome.anchored), len(outcome.requeue))
        return True


class BatchJobs:
    """A worker's background thread running ``Batcher.run_once`` every ``interval`` seconds
    (and the wallet's rebroadcast now and then), then each of ``also`` (the revocation lists'
    anchoring). Every gunicorn worker runs one; a job that fails does not stop the others."""

    REBROADCAST_EVERY = 60.0

    def __init__(self, batcher: Batcher, *, interval: float = 0.5, also: tuple[Callable[[], object], ...] = ()) -> None:
        self.batcher = batcher
        self.interval = interval
        self.also = tuple(also)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_rebroadcast = 0.0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.batcher.run_once()
                if time.monotonic() - self._last_rebroadcast > self.REBROADCAST_EVERY:
                    self._last_rebroadcast = time.monotonic()
                    self.batcher.assembler.wallet.rebroadcast_unconfirmed()
            except Exception as error:          # logged and retried next tick; never fatal to the worker
                log.warning("batch worker: %s: %s", type(error).__name__, error)
            for job in self.also:
                try:
                    job()
                except Exception as error:
                    log.warning("batch worker: %s: %s: %s", getattr(job, "__qualname__", job), type(error).__name__,
                                error)

    def start(self) -> "BatchJobs":
        self._thread = threading.Thread(target=self._loop, name="tbs-batcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

"""The activity log on the embedded chain: leaves in two periods, closed and anchored through the
role's anchor chain, inclusion proofs verified against the chain alone; tampering and a root
anchored by a stranger refused; one worker wins each period's claim (SQLite and PostgreSQL)."""
from __future__ import annotations

import hashlib
import struct
import threading
import time
from dataclasses import dataclass

import pytest

from milagro_tls.chain.errors import RootNotInChain
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.merkle import MerkleProofError, MerkleTree
from milagro_tls.roles.activitylog import (ActivityLog, LeafNotAnchored, LeafNotFound, receipt_leaf,
                                           verify_log_inclusion)
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.store import open_store

PERIOD = 60
BASE = 1_700_000_000 // PERIOD * PERIOD          # the start of a period
P = BASE // PERIOD


def leaf(n: int) -> bytes:
    return hashlib.sha256(b"leaf %d" % n).digest()


@pytest.fixture(scope="module")
def role(world, tmp_path_factory):
    """An IdP-like role on the world's chain, with its activity-log anchor chain."""
    home = RoleHome(tmp_path_factory.mktemp("log-role"), "idp", "log-idp.example")
    party = home.ensure_identity(world.source)
    headers = world.headers()
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, headers)
    return home, party, identity, proof.tx


@pytest.fixture(scope="module")
def anchored(world, role):
    """Leaves in periods P and P+1 plus a receipt, closed in P+2 and mined."""
    home, party, identity, birth_tx = role
    store = home.open_store()
    log = ActivityLog(store, PERIOD, RootAnchorer(home.path, party.name, world.source))
    first = [log.append(leaf(i), now=BASE + 1 + i) for i in range(5)]
    receipt = log.append_receipt("https://idp.example|alice", now=BASE + 30)
    second = [log.append(leaf(i), now=BASE + PERIOD + 2) for i in range(10, 13)]
    closed = log.close_due(now=BASE + PERIOD + 59)                 # P is over; P+1 is not
    assert [c.period for c in closed] == [P]
    closed += log.close_due(now=BASE + 2 * PERIOD + 1)
    assert [c.period for c in closed] == [P, P + 1]
    world.source.mine(1)
    return log, first, receipt, second, closed


def test_periods_close_into_anchored_roots_and_proofs_verify_against_the_chain(world, role, anchored):
    home, party, identity, birth_tx = role
    log, first, receipt, second, closed = anchored
    assert [(a.period, a.index) for a in first] == [(P, i) for i in range(5)]
    assert (receipt.period, receipt.index) == (P, 5) and [(a.period, a.index) for a in second] == [(P + 1, i) for i in range(3)]
    assert sorted(c.period for c in log.close_due(now=BASE + 3 * PERIOD)) == []      # nothing left to close
    states = {p: log.period(p) for p in (P, P + 1)}
    assert [s["state"] for s in states.values()] == ["anchored", "anchored"]
    assert bytes.fromhex(states[P]["root"]) == MerkleTree([leaf(i) for i in range(5)] + [receipt.leaf]).root
    assert bytes.fromhex(states[P + 1]["root"]) == MerkleTree([leaf(i) for i in range(10, 13)]).root

    headers = world.headers()
    for data, period in ((leaf(3), P), (receipt.leaf, P), (leaf(11), P + 1)):
        doc = log.inclusion(data)
        assert doc["period"] == period and doc["block_hash"] is not None
        verified = verify_log_inclusion(doc, data, identity, birth_tx, world.source, headers)
        assert verified.root.hex() == doc["root"] and verified.link.txid_hex == doc["txid"]
        assert verified.link.block_hash.hex() != "" and verified.period == period
    # The receipt's leaf is recomputable from what the user holds.
    assert receipt_leaf(receipt.salt, "https://idp.example|alice", P) == receipt.leaf
    assert receipt.leaf == hashlib.sha256(receipt.salt + struct.pack(">H", 25) + b"https://idp.example|alice"
                                          + struct.pack(">Q", P)).digest()


def test_tampered_documents_fail(world, role, anchored):
    home, party, identity, birth_tx = role
    log = anchored[0]
    headers = world.headers()
    doc = log.inclusion(leaf(2))

    def verify(changed, data=leaf(2)):
        return verify_log_inclusion({**doc, **changed}, data, identity, birth_tx, world.source, headers)

    bad_path = [doc["path"][0][:-2] + ("00" if doc["path"][0][-2:] != "00" else "11"), *doc["path"][1:]]
    with pytest.raises(MerkleProofError):
        verify({"path": bad_path})
    with pytest.raises(MerkleProofError):
        verify({"index": (doc["index"] + 1) % doc["size"]})
    with pytest.raises(MalformedInput, match="for another leaf"):
        verify({}, data=leaf(3))
    with pytest.raises(MalformedInput, match="exactly the fields"):
        verify_log_inclusion({k: v for k, v in doc.items() if k != "txid"}, leaf(2), identity, birth_tx,
                             world.source, headers)
    # A made-up tree that does contain the leaf: its proof is fine, its root was never anchored.
    fake = MerkleTree([leaf(2), leaf(99)])
    proof = fake.inclusion_proof(0).to_json()
    with pytest.raises(RootNotInChain):
        verify({**proof, "root": fake.root.hex()})


def test_a_root_anchored_by_a_stranger_is_refused(world, role, anchored, tmp_path):
    home, party, identity, birth_tx = role
    stranger = RoleHome(tmp_path, "idp", "stranger.example")
    stranger_party = stranger.ensure_identity(world.source)
    # The stranger logs the same leaf and anchors that root on its own (valid) anchor chain.
    stranger_log = ActivityLog(stranger.open_store(), PERIOD, RootAnchorer(stranger.path, stranger_party.name,
                                                                           world.source))
    stranger_log.append(leaf(2), now=BASE)
    assert len(stranger_log.close_due(now=BASE + PERIOD)) == 1
    world.source.mine(1)
    doc = stranger_log.inclusion(leaf(2))
    headers = world.headers()
    # Checked against the stranger's own identity, it verifies: the stranger did anchor it ...
    stranger_identity, stranger_proof = resolve_anchor(stranger_party.locator, stranger_party.certificate,
                                                       world.source, headers)
    verify_log_inclusion(doc, leaf(2), stranger_identity, stranger_proof.tx, world.source, headers)
    # ... but never as our role's log.
    with pytest.raises(RootNotInChain, match="is not in the party's ACTIVITY_LOG_ROOT chain"):
        verify_log_inclusion(doc, leaf(2), identity, birth_tx, world.source, headers)


def test_unknown_and_pending_leaves(role, anchored):
    log = anchored[0]
    with pytest.raises(LeafNotFound):
        log.inclusion(leaf(1000))
    late = log.append(leaf(500), now=BASE + 5 * PERIOD)
    with pytest.raises(LeafNotAnchored) as pending:
        log.inclusion(leaf(500))
    assert pending.value.period == late.period == P + 5 and pending.value.state == "open"
    with pytest.raises(ValueError, match="32-byte digest"):
        log.append(b"short", now=BASE)


# --- claims, with a fake anchorer: which worker anchors what --------------------------------
@dataclass
class FakeTx:
    txid: bytes


class CountingAnchorer:
    def __init__(self, delay: float = 0.05, fail: bool = False) -> None:
        self.calls: list[bytes] = []
        self.delay, self.fail = delay, fail
        self.lock = threading.Lock()

    def anchor(self, root_type, root):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("source down")
        with self.lock:
            self.calls.append(root)
        return FakeTx(hashlib.sha256(root).digest())


def test_one_worker_wins_each_period(store_url, tmp_path):
    anchorer = CountingAnchorer()
    store = open_store(store_url, tmp_path)
    workers = [ActivityLog(open_store(store_url, tmp_path), PERIOD, anchorer) for _ in range(4)]
    for period in range(3):
        for i in range(4):
            workers[0].append(leaf(100 * period + i), now=BASE + period * PERIOD)
    results, errors = [], []

    def close(log):
        try:
            results.append(log.close_due(now=BASE + 3 * PERIOD))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=close, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    closed = sorted(c.period for batch in results for c in batch)
    assert closed == [P, P + 1, P + 2] and len(anchorer.calls) == 3     # each anchored once, by one worker
    assert [workers[1].period(P + k)["state"] for k in range(3)] == ["anchored"] * 3
    store.close()


def test_a_closed_period_takes_no_more_leaves_and_a_stale_claim_is_retried(store_url, tmp_path):
    failing = CountingAnchorer(delay=0, fail=True)
    log = ActivityLog(open_store(store_url, tmp_path), PERIOD, failing, stale_after=30)
    log.append(leaf(1), now=BASE)
    with pytest.raises(RuntimeError, match="source down"):
        log.close_due(now=BASE + PERIOD)
    assert log.period(P)["state"] == "closing"
    # A worker whose clock lags still appends: into the next period, not the frozen one.
    assert log.append(leaf(2), now=BASE + 10).period == P + 1
    working = CountingAnchorer(delay=0)
    retry = ActivityLog(open_store(store_url, tmp_path), PERIOD, working, stale_after=30)
    assert retry.close_due(now=BASE + PERIOD + 10) == []                   # claimed 10 s ago: not stale
    closed = retry.close_due(now=BASE + PERIOD + 31)
    assert [c.period for c in closed] == [P] and working.calls == [MerkleTree([leaf(1)]).root]
    assert retry.period(P)["size"] == 1 and retry.period(P + 1)["size"] == 1


def test_each_worker_background_job_signs_the_canary_and_closes_periods(tmp_path, role):
    from milagro_tls.roles.activitylog import PeriodicJobs
    from milagro_tls.roles.canary import CanaryKeeper

    home, party, identity, birth_tx = role
    now = [BASE + 1.0]
    anchorer = CountingAnchorer(delay=0)
    log = ActivityLog(open_store(None, tmp_path), PERIOD, anchorer, clock=lambda: now[0])
    keeper = CanaryKeeper(log.store, party.key, party.name, log, clock=lambda: now[0])
    jobs = PeriodicJobs(log, canary=keeper, interval=0.02).start()
    try:
        deadline = time.monotonic() + 10
        while log.period(P) is None:
            assert time.monotonic() < deadline, "no canary was signed"
            time.sleep(0.02)
        now[0] = BASE + PERIOD + 1.0                  # the period ends: P is anchored, P+1 gets its canary
        while len(anchorer.calls) < 1 or log.period(P + 1) is None:
            assert time.monotonic() < deadline, "period P was not closed"
            time.sleep(0.02)
    finally:
        jobs.stop()
    assert log.period(P)["state"] == "anchored" and log.period(P)["size"] == 1
    assert keeper.latest().period == P + 1
    assert anchorer.calls == [MerkleTree([log_leaf(log, P)]).root]       # P's one leaf: its canary


def log_leaf(log, period):
    from milagro_tls.roles.activitylog import leaves
    from sqlalchemy import select
    with log.store.read() as connection:
        return connection.execute(select(leaves.c.leaf).where(leaves.c.period == period)).scalar_one()

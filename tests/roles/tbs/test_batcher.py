"""The batch worker in-process, on SQLite and on PostgreSQL, against the world's embedded chain,
with a settable clock: the crash windows of every step resume from the store alone.

The served tests (test_served.py) cover the happy paths through HTTP; here each step is driven
by hand: a worker that died after claiming (before the persist hook), one that died after the
persist hook but before the wallet recorded the funding, a batch nobody signed (reclaimed), a
PAT given up after its attempts, two certificates with one key."""
from __future__ import annotations

import dataclasses
import os
import time

import coincurve
import pytest
from sqlalchemy import select

from milagro_tls.chain.errors import TxNotFound
from milagro_tls.chain.tx import parse_tx
from milagro_tls.enrolment import poll_mac, seal_enrolment
from milagro_tls.identity.batch import BatchAssembler, BatchKey, SigningRequest
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.wallet import AnchoringWallet
from milagro_tls.roles.activitylog import ActivityLog
from milagro_tls.roles.store import open_store
from milagro_tls.roles.tbs import tables
from milagro_tls.roles.tbs.batcher import Batcher, BatchPolicy
from milagro_tls.roles.tbs.enrolments import AtRestKey, Enrolments
from milagro_tls.roles.tbs.groups import TbsError
from milagro_tls.roles.tbs.tables import batches, enrolments


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Crash(BaseException):
    """What SIGKILL looks like from inside: nothing after it runs (not an Exception, so no
    handler of the code under test catches it)."""


@dataclasses.dataclass
class Rig:
    world: object
    store: object
    batcher: Batcher
    enrolments: Enrolments
    enrolment_key: coincurve.PrivateKey
    clock: Clock
    home: object
    pats: dict = dataclasses.field(default_factory=dict)

    @property
    def assembler(self) -> BatchAssembler:
        return self.batcher.assembler

    def new_pat(self, name: str) -> BatchPat:
        pat = BatchPat.create(self.home / "pats", name=name, batch_key=self.assembler.batch_key.xonly,
                              network=self.world.source.network)
        return pat

    def enrol(self, pat: BatchPat) -> tuple[str, bytes]:
        aes_key = os.urandom(16)
        doc = self.enrolments.enrol(seal_enrolment(self.enrolment_key.public_key.format(), pat.certificate, aes_key))
        self.pats[doc["enrolment_id"]] = (pat, aes_key)
        return doc["enrolment_id"], aes_key

    def sign(self, enrolment_id: str) -> dict:
        pat, aes_key = self.pats[enrolment_id]
        request = SigningRequest.from_json(self.enrolments.signing_request(enrolment_id, poll_mac(aes_key, enrolment_id)))
        return self.enrolments.submit_signature(enrolment_id, pat.sign(request).to_json())

    def row(self, enrolment_id: str):
        with self.store.read() as connection:
            return connection.execute(select(enrolments).where(enrolments.c.id == enrolment_id)).one()

    def batch(self, batch_id: int):
        with self.store.read() as connection:
            return connection.execute(select(batches).where(batches.c.id == batch_id)).one()

    def status(self, enrolment_id: str) -> dict:
        return self.enrolments.status(enrolment_id, poll_mac(self.pats[enrolment_id][1], enrolment_id))


@pytest.fixture
def rig(world, tmp_path, store_url):
    store = open_store(store_url, tmp_path)
    tables.migrate(store)
    clock = Clock()
    key = BatchKey.load_or_create(tmp_path / "tbs")
    assembler = BatchAssembler(key, AnchoringWallet(tmp_path / "tbs", world.source))
    activity = ActivityLog(store, 60, None, clock=clock)
    batcher = Batcher(store, assembler, world.source, activity,
                      BatchPolicy(gather=0, batch_wait=10, lease=30, max_attempts=2), clock=clock)
    enrolment_key = coincurve.PrivateKey()
    service = Enrolments(store, enrolment_key=enrolment_key, at_rest=AtRestKey(os.urandom(32)),
                         batch_key=key.xonly, network=world.source.network.label, tbs_key=IdentityKey.generate(),
                         tbs_name="tbs-test", accept=assembler.accept, clock=clock)
    yield Rig(world, store, batcher, service, enrolment_key, clock, tmp_path)
    store.close()


def test_a_worker_dead_after_its_claim_leaves_an_opening_that_is_released_after_the_lease(rig, monkeypatch):
    a, _ = rig.enrol(rig.new_pat("a"))
    recorded_before = len(rig.assembler.wallet.pending())
    monkeypatch.setattr(rig.batcher, "_fund", lambda batch_id, certificates: None)     # died right here
    batch_id = rig.batcher.open_next()
    monkeypatch.undo()
    assert rig.batch(batch_id).state == "opening" and rig.row(a).state == "batched"
    assert rig.enrolments.signing_request(a, poll_mac(rig.pats[a][1], a)) is None       # 204: nothing to sign yet
    rig.batcher.release_stale_openings()                                                 # the lease still runs
    assert rig.batch(batch_id).state == "opening"
    rig.clock.now += 31
    rig.batcher.release_stale_openings()
    assert rig.batch(batch_id).state == "abandoned"
    row = rig.row(a)
    assert (row.state, row.batch_id, row.position) == ("requeued", None, None)
    assert len(rig.assembler.wallet.pending()) == recorded_before       # nothing was ever funded
    # The next pass batches it again, funded this time.
    again = rig.batcher.open_next()
    assert again != batch_id and rig.batch(again).state == "signing" and rig.row(a).batch_id == again


def test_a_worker_dead_between_the_persist_hook_and_the_wallet_record_resumes_and_anchors(rig, monkeypatch):
    a, _ = rig.enrol(rig.new_pat("a"))
    b, _ = rig.enrol(rig.new_pat("b"))
    real_open = rig.assembler.open

    def open_and_die(certificates, *, persist, **kwargs):
        def persist_then_die(batch):
            persist(batch)
            raise Crash()
        return real_open(certificates, persist=persist_then_die, **kwargs)

    monkeypatch.setattr(rig.assembler, "open", open_and_die)
    with pytest.raises(Crash):
        rig.batcher.open_next()
    monkeypatch.undo()
    batch_id = rig.row(a).batch_id
    stored = rig.batch(batch_id)
    assert stored.state == "signing"
    assert rig.assembler.wallet.recorded(stored.funding_txid) is None       # the wallet never saw it
    with pytest.raises(TxNotFound):
        rig.world.source.tx_status(stored.funding_txid)
    # After the restart: the PATs sign the batch the store describes; finishing sends the funding first.
    assert rig.sign(a)["status"] == "accepted" and rig.sign(b)["status"] == "accepted"
    rig.batcher.finish_due()
    assert rig.batch(batch_id).state == "sent"
    assert rig.world.source.tx_status(stored.funding_txid).block_hash is None     # in the mempool
    rig.world.source.mine(1)
    rig.batcher.settle_sent()
    assert rig.batch(batch_id).state == "settled"
    for enrolment_id in (a, b):
        pat = rig.pats[enrolment_id][0]
        assert rig.status(enrolment_id)["locator"] == pat.confirm(rig.world.source).to_json()


def test_a_batch_nobody_signed_is_reclaimed_and_its_pats_requeued(rig):
    a, aes = rig.enrol(rig.new_pat("a"))
    batch_id = rig.batcher.open_next()
    funding = rig.batch(batch_id).funding_txid
    rig.batcher.finish_due()
    assert rig.batch(batch_id).state == "signing"            # --batch-wait has not passed
    rig.clock.now += 11
    rig.batcher.finish_due()
    assert rig.batch(batch_id).state == "reclaimed"
    assert rig.row(a).state == "requeued"
    reclaim = [entry for entry in rig.assembler.wallet.pending() if entry.label == "batch reclaim"]
    assert any(bytes(parse_tx(entry.raw).vin[0].txid)[::-1] == funding for entry in reclaim)
    with pytest.raises(TbsError) as refused:
        rig.enrolments.submit_signature(a, {"txid": "00" * 32, "input": 0, "position": 0,
                                                             "signature": "00" * 64})
    assert (refused.value.status, refused.value.error) == (409, "batch_closed")
    assert rig.enrolments.signing_request(a, poll_mac(aes, a)) is None


def test_a_pat_that_never_signs_is_given_up_after_its_attempts(rig):
    talker, _ = rig.enrol(rig.new_pat("talker"))
    silent, aes = rig.enrol(rig.new_pat("silent"))
    first = rig.batcher.open_next()
    rig.sign(talker)
    rig.clock.now += 11
    rig.batcher.finish_due()
    assert rig.batch(first).state == "sent"
    rig.world.source.mine(1)
    rig.batcher.settle_sent()
    assert rig.row(talker).state == "anchored" and rig.row(silent).state == "requeued"
    # Its second (and, with max_attempts=2, last) batch: alone and silent, reclaimed, given up.
    second = rig.batcher.open_next()
    assert rig.row(silent).batch_id == second and rig.row(silent).attempts == 2
    rig.clock.now += 11
    rig.batcher.finish_due()
    assert rig.batch(second).state == "reclaimed" and rig.row(silent).state == "failed"
    with pytest.raises(TbsError) as refused:
        rig.enrolments.signing_request(silent, poll_mac(aes, silent))
    assert (refused.value.status, refused.value.error) == (410, "enrolment_failed")
    assert rig.batcher.open_next() is None


def test_two_certificates_with_one_key_never_share_a_batch(rig):
    pat = rig.new_pat("owner")
    twin = dataclasses.replace(pat.certificate, name="twin")
    aes = os.urandom(16)
    first, _ = rig.enrol(pat)
    second = rig.enrolments.enrol(seal_enrolment(rig.enrolment_key.public_key.format(), twin, aes))["enrolment_id"]
    one = rig.batcher.open_next()
    two = rig.batcher.open_next()
    assert {rig.row(first).batch_id, rig.row(second).batch_id} == {one, two} and one != two
    assert rig.batch(one).size == 1 and rig.batch(two).size == 1


def test_a_batch_that_cannot_be_funded_puts_its_pats_back_and_opening_backs_off(rig, monkeypatch):
    from milagro_tls.identity.wallet import InsufficientFunds
    a, _ = rig.enrol(rig.new_pat("a"))

    def empty(*args, **kwargs):
        raise InsufficientFunds("bcrt1qexample", 1000, 2000, 1000)

    monkeypatch.setattr(rig.assembler.wallet, "ensure_funded", empty)
    with pytest.raises(InsufficientFunds):
        rig.batcher.open_next()
    with rig.store.read() as connection:
        abandoned = connection.execute(select(batches.c.id, batches.c.state)).one()
    assert abandoned.state == "abandoned"
    row = rig.row(a)
    assert (row.state, row.batch_id) == ("requeued", None)
    assert rig.batcher.open_next() is None                     # backing off (2 s)
    monkeypatch.undo()
    rig.clock.now += 2.5
    opened = rig.batcher.open_next()
    assert opened is not None and opened != abandoned.id and rig.row(a).batch_id == opened

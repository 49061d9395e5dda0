"""The TBS's revocation lists in-process (roles/tbs/revocations.py), on SQLite and PostgreSQL,
against the world's embedded chain: each anchored list is the current link of the TBS's 0x04
chain, two workers never anchor one list twice, a worker dead after its claim is taken over
with the same root after the lease, and the CLI records a revocation idempotently."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from sqlalchemy import select

from milagro_tls.chain.rootchain import follow_root_chain
from milagro_tls.chain.revocation_list import REVOCATION_LIST, revocation_list_root
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.party import Party
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.roles.store import open_store
from milagro_tls.roles.tbs import tables
from milagro_tls.roles.tbs.groups import TbsError
from milagro_tls.roles.tbs.revocations import RevocationLists, digest_of_pat, parse_digest, revoke
from milagro_tls.roles.tbs.tables import revocation_lists, revocations

from .test_batcher import Clock, Crash


def digest(n: int) -> bytes:
    return hashlib.sha256(b"pat certificate %d" % n).digest()


@pytest.fixture
def tbs_party(world, tmp_path):
    name = f"tbs-rl-{tmp_path.name[-12:]}"
    party = Party.create(world.home, world.source, role="tbs", name=name, root_chains=(REVOCATION_LIST,))
    headers = world.headers()
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, headers)
    yield name, identity, proof.tx, headers
    headers.close()


@pytest.fixture
def store(store_url, tmp_path):
    store = open_store(store_url, tmp_path)
    tables.migrate(store)
    yield store
    store.close()


def current_view(world, tbs_party):
    _, identity, birth_tx, headers = tbs_party
    return follow_root_chain(identity, birth_tx, REVOCATION_LIST, world.source, headers)


def list_row(store, number: int):
    with store.read() as connection:
        return connection.execute(select(revocation_lists).where(revocation_lists.c.number == number)).one()


def test_each_list_is_anchored_once_as_the_current_link(world, store, tbs_party):
    name = tbs_party[0]
    clock = Clock()
    # Two workers over one store, each with its own anchorer (the same party, one lock).
    one = RevocationLists(store, RootAnchorer(world.home, name, world.source), lease=30, clock=clock)
    two = RevocationLists(store, RootAnchorer(world.home, name, world.source), lease=30, clock=clock)
    assert one.anchor_due() is None                               # nothing revoked: nothing to anchor

    first = revoke(store, digest(1), "lost device", clock=clock)
    assert first == {"digest": digest(1).hex(), "revoked": True, "new": True, "revoked_at": clock.now,
                     "reason": "lost device", "list_number": None, "enrolled_here": False}
    again = revoke(store, digest(1), "another reason", clock=clock)
    assert again["new"] is False and again["reason"] == "lost device"
    revoke(store, digest(2), clock=clock)

    assert one.anchor_due() == 1
    assert two.anchor_due() is None                               # list 1 is anchored: nothing due
    row = list_row(store, 1)
    assert row.state == "anchored" and row.root == revocation_list_root([digest(1), digest(2)])
    world.source.mine(1)
    view = current_view(world, tbs_party)
    assert view.current.number == 1 and view.current.root == row.root and view.current.txid_hex == row.txid
    assert one.newest_anchored() == (1, row.root, view.current.txid)

    revoke(store, digest(3), clock=clock)
    assert two.anchor_due() == 2 and one.anchor_due() is None
    second = list_row(store, 2)
    assert second.root == revocation_list_root([digest(1), digest(2), digest(3)])
    # Anchored means sent: the link is pending (mempool) until mined, then the current one.
    view = current_view(world, tbs_party)
    assert view.current.number == 1 and view.pending_root == second.root
    world.source.mine(1)
    view = current_view(world, tbs_party)
    assert view.current.number == 2 and view.current.root == second.root and view.pending_txid is None
    with store.read() as connection:
        listed = dict(connection.execute(select(revocations.c.digest, revocations.c.list_number)).all())
    assert listed == {digest(1): 1, digest(2): 1, digest(3): 2}
    assert one.leaves(2, second.root) == tuple(sorted([digest(1), digest(2), digest(3)]))


def test_a_worker_dead_after_its_claim_is_taken_over_with_the_same_root(world, store, tbs_party, monkeypatch):
    name = tbs_party[0]
    clock = Clock()
    dying_anchorer = RootAnchorer(world.home, name, world.source)
    dying = RevocationLists(store, dying_anchorer, lease=30, clock=clock)
    other = RevocationLists(store, RootAnchorer(world.home, name, world.source), lease=30, clock=clock)
    revoke(store, digest(10), clock=clock)

    def crash(root_type, root, **kwargs):
        raise Crash()
    monkeypatch.setattr(dying_anchorer, "anchor", crash)
    with pytest.raises(Crash):
        dying.anchor_due()
    claimed = list_row(store, 1)
    assert claimed.state == "anchoring" and claimed.root == revocation_list_root([digest(10)])
    revoke(store, digest(11), clock=clock)                       # arrives while list 1 is claimed
    assert other.anchor_due() is None                            # the claim is fresh: nobody takes it
    clock.now += 31
    assert other.anchor_due() == 1                               # taken over: the same root
    assert list_row(store, 1).root == claimed.root and list_row(store, 1).state == "anchored"
    assert other.anchor_due() == 2                               # then the revocation that came meanwhile
    world.source.mine(1)
    view = current_view(world, tbs_party)
    assert [link.root for link in view.links] == [claimed.root, revocation_list_root([digest(10), digest(11)])]


def test_revoke_refuses_bad_input_and_resolves_enrolled_names(store):
    with pytest.raises(TbsError) as refused:
        revoke(store, b"\x01" * 31)
    assert refused.value.error == "invalid_digest"
    with pytest.raises(TbsError):
        revoke(store, digest(1), "x" * 501)
    for text in ("zz" * 32, "ab" * 31, None):
        with pytest.raises(TbsError) as refused:
            parse_digest(text)
        assert refused.value.error == "invalid_digest"
    assert parse_digest(digest(5).hex()) == digest(5)
    with pytest.raises(TbsError) as refused:
        digest_of_pat(store, "nobody")
    assert (refused.value.status, refused.value.error) == (404, "unknown_pat")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_cli_records_a_revocation_and_needs_yes(tmp_path, store_url):
    def milagro(*args):
        return subprocess.run([sys.executable, "-m", "milagro_tls.cli", "tbs", "admin", "revoke", "--home",
                               str(tmp_path), *args], capture_output=True, text=True, timeout=120)
    hexdigest = digest(7).hex()
    unconfirmed = milagro("--digest", hexdigest)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    done = milagro("--digest", hexdigest, "--reason", "stolen", "--yes")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["digest"], doc["revoked"], doc["new"], doc["reason"]) == (hexdigest, True, True, "stolen")
    again = json.loads(milagro("--digest", hexdigest, "--yes").stdout)
    assert again["new"] is False and again["revoked_at"] == doc["revoked_at"]
    bad = milagro("--digest", "00", "--yes")
    assert bad.returncode == 1 and "invalid_digest" in bad.stderr
    unknown = milagro("--pat", "nobody", "--yes")
    assert unknown.returncode == 1 and "unknown_pat" in unknown.stderr
    store = open_store(None, tmp_path)
    try:
        with store.read() as connection:
            assert connection.execute(select(revocations.c.digest)).scalars().all() == [digest(7)]
    finally:
        store.close()


def test_the_tbs_refuses_its_own_revoked_pats_from_its_store(store, store_url, tmp_path, monkeypatch):
    """OwnPatRevocations (the TBS's own Context's batch checker): it covers the batch PATs
    naming this TBS's batching key, refuses one whose digest is in tbs_revocations (listed or
    not yet) with AnchorRevoked, and opens its store once per process."""
    from types import SimpleNamespace

    from milagro_tls.chain.errors import AnchorRevoked
    from milagro_tls.roles.tbs import revocations as revocations_module
    from milagro_tls.roles.tbs.revocations import OwnPatRevocations, share_worker_store

    monkeypatch.setattr(revocations_module, "_worker_store", None)

    key = hashlib.sha256(b"batch key").digest()

    def pat(n: int, *, batch_key: bytes = key, seal=None):
        certificate = SimpleNamespace(batch_key=batch_key, digest=lambda: digest(n))
        return SimpleNamespace(name=f"pat-{n}", seal=seal, certificate=certificate)

    checker = OwnPatRevocations(tmp_path, store_url, key)
    try:
        assert checker.covers(pat(1))
        assert not checker.covers(pat(1, batch_key=bytes(32)))          # another TBS's PAT
        assert not checker.covers(pat(1, seal=(bytes(32), 0)))          # a sealed identity
        checker(pat(1))
        checker(pat(2))
        revoke(store, digest(1), "stolen")
        with pytest.raises(AnchorRevoked, match="revoked by this TBS"):
            checker(pat(1))                                             # not in any list yet
        checker(pat(2))
        with store.begin() as connection:
            connection.execute(revocations.update().values(list_number=1))
        with pytest.raises(AnchorRevoked):
            checker(pat(1))                                             # listed

        # Without a worker's store it opened its own; a process (a forked worker) whose app
        # shares its store uses that one, and any other process opens its own again.
        own = checker.store()
        assert own is not store and checker.store() is own
        share_worker_store(tmp_path, store_url, store)
        checker._pid = -1                                               # as if forked
        assert checker.store() is store
        with pytest.raises(AnchorRevoked):
            checker(pat(1))
        checker.close()                                                 # not ours: left open
        checker(pat(2))
        monkeypatch.setattr(revocations_module, "_worker_store", (-1, *revocations_module._worker_store[1:]))
        checker._pid = -1
        assert checker.store() is not store
    finally:
        checker.close()
        own.close()
    with pytest.raises(ValueError):
        OwnPatRevocations(tmp_path, store_url, b"short")

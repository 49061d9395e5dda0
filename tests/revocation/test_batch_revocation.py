"""Revoking batch-anchored PATs in the handshake: a service Context with
batch_revocation=TbsRevocations.from_tbs(...) asks the PATs' TBS (its real chain endpoints over
WSGI, its store a few lines here) and checks the answer against the TBS's 0x04 chain on the
embedded regtest chain.

A PAT not revoked is served; one revoked in the TBS's store before any list is anchored is
refused with certificate_revoked (44); so is one on a list anchored (pending, then mined); a
TBS answering with a proof against an older list once a newer link exists is refused (stale:
status unknown, bad_certificate); a TBS that does not answer costs revocation_timeout, then
the PAT is refused (fail closed); a PAT of another TBS is not covered and is served. A thin
client over tbs:// follows the 0x04 chain from proofs, never a block."""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.chain.errors import AnchorRevoked, SourceError
from milagro_tls.chain.hashes import sha256d
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.revocation_list import (REVOCATION_LIST, RevocationAnswer, RevocationListStale,
                                               TbsRevocations, answer_for, revocation_list_root)
from milagro_tls.chain.tbs_endpoints import chain_blueprint
from milagro_tls.chain.tbs_source import TbsSource, checkpoint_from_source
from milagro_tls.chain.transport import RetryPolicy
from milagro_tls.chain.verify import verify_anchor
from milagro_tls.context import Context
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.merkle import EMPTY_ROOT
from milagro_tls.roles.wellknown import wellknown_blueprint
from milagro_tls.trust import TrustEntry, TrustStore

from batch.support import Batcher
from helpers.contexts import echo_server

CERTIFICATE_REVOKED = 44
BAD_CERTIFICATE = 42
BASE = "https://tbs.test"


@dataclass
class Store:
    """What the TBS role keeps: every revoked digest, and the newest list it anchored."""
    anchorer: RootAnchorer
    revoked: set = field(default_factory=set)
    anchored: list = field(default_factory=list)
    link: tuple | None = None
    #: A lying TBS: answers against this (list, link) instead of its newest.
    frozen: tuple | None = None
    hang: threading.Event | None = None

    def answer(self, digest: bytes) -> RevocationAnswer:
        if self.hang is not None:
            self.hang.wait(30)
        if self.frozen is not None:
            anchored, link = self.frozen
            return answer_for(anchored, set(anchored), digest, link)
        return answer_for(self.anchored, self.revoked, digest, self.link)

    def anchor(self) -> None:
        """The next list (every digest revoked so far), sent: pending until mined."""
        listed = sorted(self.revoked)
        sent = self.anchorer.anchor(REVOCATION_LIST, revocation_list_root(listed))
        self.anchored, self.link = listed, (sent.txid, (self.link[1] if self.link else 0) + 1)


@dataclass
class Setup:
    world: object
    tbs: Party
    store: Store
    app: Flask
    pats: dict               # name -> (BatchPat, LocalIdentity)
    stranger: tuple          # a PAT of another TBS

    def tbs_source(self, cls=TbsSource) -> TbsSource:
        return cls(BASE, transport=httpx.WSGITransport(app=self.app))

    def checker(self, **options) -> TbsRevocations:
        return TbsRevocations.from_tbs(self.tbs_source(), self.tbs.locator, self.world.source,
                                       HeaderChain(":memory:", self.world.source.network), **options)

    def peer(self, name: str):
        """The PeerIdentity a verifier makes of a PAT's staple."""
        pat, local = self.pats[name] if name in self.pats else self.stranger
        headers = HeaderChain(":memory:", self.world.source.network)
        headers.sync_from(self.world.source)
        return verify_anchor(local.locator, local.certificate, local.proof, headers)


@pytest.fixture(scope="module")
def setup(own_world, tmp_path_factory):
    world = own_world
    batcher = Batcher.create(world.source, tmp_path_factory.mktemp("tbs-revocation"))
    tbs = Party.create(world.home, world.source, role="tbs", name="tbs.example",
                       root_chains=(REVOCATION_LIST,), batch_key=batcher.batch_key)
    pats = batcher.new_pats(4)
    batcher.run(pats)
    other = Batcher.create(world.source, tmp_path_factory.mktemp("other-tbs"))
    stranger = other.new_pats(1, prefix="stranger")
    other.run(stranger)
    made = {}
    for pat in pats + stranger:
        pat.confirm(world.source)
        made[pat.name] = (pat, LocalIdentity.from_batch_pat(pat, world.source))
    store = Store(RootAnchorer(world.home, "tbs.example", world.source))
    app = Flask("tbs-revocation")
    app.register_blueprint(chain_blueprint(world.source, revocations=lambda digest: store.answer(digest)))
    app.register_blueprint(wellknown_blueprint(tbs))
    return Setup(world, tbs, store, app, {p.name: made[p.name] for p in pats}, made[stranger[0].name])


def _service(setup: Setup, **options) -> Context:
    """The verifier: a service that accepts the PATs as clients and checks their revocation."""
    entries = [TrustEntry.from_json(pat.trust_entry()) for pat, _ in [*setup.pats.values(), setup.stranger]]
    options.setdefault("batch_revocation", setup.checker())
    return Context(identity=setup.world.identities["server.example"], chain=setup.world.source,
                   headers=":memory:", trust=TrustStore(entries), **options)


def _connect(setup: Setup, port: int, name: str) -> bytes:
    _, local = setup.pats[name] if name in setup.pats else setup.stranger
    client = Context(identity=local, chain=setup.world.source, headers=":memory:",
                     trust=setup.world.trust("server.example"), check_revocation=False)
    with client, client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname="server.example") as tls:
        tls.sendall(b"ping")
        return tls.recv(4)


def _refused(setup: Setup, port: int, name: str) -> int:
    """The alert the PAT received from the service that refused it."""
    with pytest.raises(MilagroSSLError) as refused:
        _connect(setup, port, name)
    assert not refused.value.alert_sent
    return refused.value.alert


def test_revoked_pats_are_refused_before_and_after_their_list_is_anchored(setup, caplog):
    store, world = setup.store, setup.world
    caplog.set_level(logging.INFO, logger="milagro_tls.context")
    pat1, pat2, pat3 = (f"pat{n}" for n in (1, 2, 3))
    service = _service(setup)
    with service, echo_server(service) as (port, errors):
        # No revocation yet: the TBS proves absence from the empty list, no link anchored.
        assert store.answer(setup.peer(pat1).certificate.digest()).root == EMPTY_ROOT
        assert _connect(setup, port, pat1) == b"ping"

        # Revoked in the TBS's store, its list not anchored yet: the TBS's word suffices.
        store.revoked.add(setup.pats[pat2][0].certificate.digest())
        assert _refused(setup, port, pat2) == CERTIFICATE_REVOKED
        assert _connect(setup, port, pat1) == b"ping"

        # The list naming pat2 is sent (pending) and then mined: pat1's proof is against it.
        store.anchor()
        checker = service.batch_revocation[0]
        assert checker.view().pending_root == revocation_list_root(store.anchored)
        assert _connect(setup, port, pat1) == b"ping"
        assert _refused(setup, port, pat2) == CERTIFICATE_REVOKED
        world.source.mine(1)
        view = checker.view()
        assert view.pending_root is None and view.current.number == 1
        assert view.current.root == revocation_list_root([setup.pats[pat2][0].certificate.digest()])
        assert _connect(setup, port, pat1) == b"ping"
        assert _refused(setup, port, pat2) == CERTIFICATE_REVOKED

        # pat3 revoked and anchored in list 2; a TBS still answering with list 1 is stale.
        old = (store.anchored, store.link)
        store.revoked.add(setup.pats[pat3][0].certificate.digest())
        store.anchor()
        world.source.mine(1)
        store.frozen = old
        try:
            assert _refused(setup, port, pat3) == BAD_CERTIFICATE
            with pytest.raises(RevocationListStale, match="link 2"):
                checker(setup.peer(pat3))
        finally:
            store.frozen = None
        assert _refused(setup, port, pat3) == CERTIFICATE_REVOKED
        assert _connect(setup, port, pat1) == b"ping"
        # A PAT of another TBS: no checker covers it, it is not checkable and is served.
        assert not checker.covers(setup.peer(setup.stranger[0].name))
        assert _connect(setup, port, setup.stranger[0].name) == b"ping"
        assert _connect(setup, port, setup.stranger[0].name) == b"ping"
        unchecked = [r.getMessage() for r in caplog.records if "no batch_revocation checker covers" in r.getMessage()]
        assert unchecked == [f"batch-anchored PAT {setup.stranger[0].name!r}: no batch_revocation checker covers "
                             "its TBS; its revocation cannot be checked (accepted)"]
    refusals = [e for e in errors if isinstance(e, MilagroSSLError)]
    assert [e.alert for e in refusals] == [CERTIFICATE_REVOKED] * 3 + [BAD_CERTIFICATE, CERTIFICATE_REVOKED]
    assert all(e.alert_sent for e in refusals)
    assert len(errors) == len(refusals)


def test_the_checker_believes_the_tbs_when_it_says_revoked(setup):
    checker = setup.checker()
    store = setup.store
    digest = setup.pats["pat4"][0].certificate.digest()
    store.revoked.add(digest)
    try:
        with pytest.raises(AnchorRevoked, match="the TBS's word"):
            checker(setup.peer("pat4"))
    finally:
        store.revoked.discard(digest)
    checker(setup.peer("pat4"))
    with pytest.raises(ValueError, match="not a batch-anchored PAT of tbs.example"):
        checker(setup.peer(setup.stranger[0].name))


def test_a_silent_tbs_costs_the_timeout_then_the_pat_is_refused(setup):
    store = setup.store
    store.hang = threading.Event()
    service = _service(setup, revocation_timeout=0.5)
    try:
        with service, echo_server(service) as (port, _):
            started = time.monotonic()
            assert _refused(setup, port, "pat1") == BAD_CERTIFICATE
            assert 0.5 <= time.monotonic() - started < 3.0
            store.hang.set()
            store.hang = None
            assert _connect(setup, port, "pat1") == b"ping"
    finally:
        if store.hang is not None:
            store.hang.set()
        store.hang = None


def test_an_unreachable_tbs_refuses_the_pat(setup):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = probe.getsockname()[1]                      # nothing listens once closed
    good = setup.checker()
    dead = TbsSource(f"http://127.0.0.1:{closed}", retry=RetryPolicy(tries=1))
    unreachable = TbsRevocations(good.tbs, good.birth_tx, dead, setup.world.source, good.headers)
    with pytest.raises(SourceError):
        unreachable(setup.peer("pat1"))
    service = _service(setup, batch_revocation=[unreachable])
    with service, dead, echo_server(service) as (port, _):
        assert _refused(setup, port, "pat1") == BAD_CERTIFICATE


class ProofsOnly(TbsSource):
    """A tbs:// source that counts the proofs it was served (it cannot serve a block)."""
    proofs = 0

    def anchor_proof(self, txid, block_hash, height):
        type(self).proofs += 1
        return super().anchor_proof(txid, block_hash, height)


def test_a_thin_client_follows_the_revocation_chain_over_tbs(setup):
    """The PAT's view of its TBS: headers from a checkpoint below the TBS's birth, every link
    from the TBS's proofs."""
    source, store = setup.world.source, setup.store
    revoked = setup.pats["pat3"][0].certificate.digest()
    if revoked not in store.anchored:            # run alone: anchor a list naming pat3
        store.revoked.add(revoked)
        store.anchor()
        source.mine(1)
    tbs = setup.tbs_source(ProofsOnly)
    born = source.tx_status(setup.tbs.locator.txid).height
    headers = HeaderChain(":memory:", source.network,
                          checkpoint_from_source(tbs, born - 1, sha256d(source.header(born - 1))))
    with tbs:
        checker = TbsRevocations.from_tbs(tbs, setup.tbs.locator, tbs, headers)
        view = checker.view()
        assert view.complete and view.pending_root is None and view.current.number == store.link[1]
        assert view.current.txid == store.link[0] and ProofsOnly.proofs >= store.link[1]
        assert view.current.root == revocation_list_root(store.anchored)
        checker(setup.peer("pat1"))
        with pytest.raises(AnchorRevoked):
            checker(setup.peer("pat3"))
        with pytest.raises(SourceError, match="not blocks"):
            tbs.block(view.current.block_hash)

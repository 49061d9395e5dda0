"""A PAT and its revocation, against the PAT tests' TBS subprocess: its first instructions
carry its status (not revoked, against the empty list) and the trust entries' seals; once the
TBS revokes it, ``update`` ends in PatRevoked and ``milagro pat update`` prints
{"revoked": true, ...} and exits 3, nothing installed; a stale "not revoked" answer (against the
list before its revocation) is asked again and finds it revoked."""
from __future__ import annotations

import json

import pytest

from milagro_tls.chain.revocation_list import REVOCATION_LIST, RevocationAnswer, TbsRevocations, answer_for
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.merkle import EMPTY_ROOT
from milagro_tls.roles.pat import PatHome, enrol, update
from milagro_tls.roles.pat import flow
from milagro_tls.roles.pat.flow import PatRevoked, check_own_revocation

from ..tbs.patclient import wait_anchored_list
from .conftest import GROUP_TRUST, checkpoint_below, tbs_address
from .test_enrol import pat_cli


def test_a_pat_checks_its_status_and_reports_its_revocation(world, tbs, tmp_path):
    home = tmp_path / "device"
    _, checkpoint = checkpoint_below(world, tbs)
    result = enrol(home, tbs_address(tbs), tbs.locator, checkpoint=checkpoint, name="pat-revoked",
                   min_confirmations=1, interval=0.3, timeout=180, on_wait=lambda: world.source.mine(1))
    digest = BatchPat.load(home, "pat-revoked").certificate.digest()

    # Installed: the TBS's word that it is not revoked (checked against its 0x04 chain on the
    # way in), and every trust entry's seal unspent.
    revocation = PatHome(home).instructions()["revocation"]
    status = RevocationAnswer.from_json(revocation["pat"])
    assert status.revoked is False and status.root == EMPTY_ROOT and status.link_txid is None
    assert revocation["entries"] == {name: {"seal_spent": False, "spender": None} for _, name, _ in GROUP_TRUST}

    done = tbs.milagro("admin", "revoke", "--pat", "pat-revoked", "--reason", "decommissioned", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == digest.hex()

    with pytest.raises(PatRevoked) as revoked:
        update(home, min_confirmations=1)
    assert (revoked.value.digest, revoked.value.name, revoked.value.tbs) == (digest, "pat-revoked", "tbs-pat")
    cli = pat_cli("update", "--home", home, "--min-confirmations", "1")
    assert cli.returncode == 3, cli.stderr
    assert json.loads(cli.stdout) == {"revoked": True, "name": "pat-revoked", "certificate_digest": digest.hex(),
                                      "tbs": "tbs-pat"}
    assert PatHome(home).load().installed_version == result.version          # nothing installed

    # The pre-revocation answer (the empty list) replayed once list 1 is on the chain: stale,
    # so the PAT asks its TBS again and learns it is revoked.
    listed = wait_anchored_list(tbs, 1)
    world.source.mine(1)
    stale = answer_for((), (), digest, None)
    state, session, tbs_certificate, pat = flow._anchored_session(PatHome(home))
    try:
        identity, proof = resolve_anchor(state.locator, tbs_certificate, session.source, session.headers,
                                         min_confirmations=1)
        view = TbsRevocations(identity, proof.tx, session.source, session.source, session.headers).view()
        assert view.root_type == REVOCATION_LIST and view.current.root == listed.root
        with pytest.raises(PatRevoked):
            check_own_revocation(session, tbs_certificate, pat, stale, min_confirmations=1)
    finally:
        session.close()

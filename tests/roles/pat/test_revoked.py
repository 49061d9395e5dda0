"""A PAT and its revocation, against the PAT tests' TBS subprocess: its first instructions
carry its status (not revoked, against the empty list) and the trust entries' seals, and it
connects to its TBS with its anchored identity; once the TBS revokes it, the TBS refuses its
handshake with alert certificate_revoked (44), so ``update`` and ``connect`` end in PatRevoked
(confirmed over tbs://) and ``milagro pat update|connect`` print {"revoked": true, ...} and exit
3, nothing installed, while its MAC path answers 403 pat_revoked; a stale "not revoked" answer
(against the list before its revocation) is asked again and finds it revoked."""
from __future__ import annotations

import json
import socket

import httpx
import pytest

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.chain.revocation_list import REVOCATION_LIST, RevocationAnswer, TbsRevocations, answer_for
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.context import Context
from milagro_tls.enrolment import poll_mac
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.merkle import EMPTY_ROOT
from milagro_tls.roles.pat import PatHome, enrol, update
from milagro_tls.roles.pat.flow import connect
from milagro_tls.roles.pat import flow
from milagro_tls.roles.pat.flow import PatRevoked, check_own_revocation

from ..tbs.patclient import wait_anchored_list
from .conftest import GROUP_TRUST, checkpoint_below, tbs_address
from .test_enrol import pat_cli

CERTIFICATE_REVOKED = 44


def handshake_with_tbs(world, tbs, home, name: str) -> bytes:
    """One milagro-tls handshake with the PAT's batch-anchored identity to its TBS (pinned as
    in the PAT's trust store), then the start of an HTTP answer."""
    pat = BatchPat.load(home, name)
    identity = LocalIdentity.from_batch_pat(pat, world.source)
    client = Context(identity=identity, trust=PatHome(home).trust(), chain=world.source, headers=":memory:",
                     check_revocation=False)
    with client, client.wrap_socket(socket.create_connection(("127.0.0.1", tbs.port), timeout=10),
                                    server_hostname="tbs-pat") as tls:
        tls.sendall(b"GET /pat/instructions?since=0 HTTP/1.1\r\nHost: tbs-pat\r\nConnection: close\r\n\r\n")
        return tls.recv(12)


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

    # Not revoked: its TBS serves it over milagro-tls with its anchored identity.
    instructions_url = f"https://127.0.0.1:{tbs.port}/pat/instructions?since=0"
    served = connect(home, instructions_url, name="tbs-pat", min_confirmations=1)
    assert served.status_code == 200 and served.content
    assert handshake_with_tbs(world, tbs, home, "pat-revoked") == b"HTTP/1.1 200"

    done = tbs.milagro("admin", "revoke", "--pat", "pat-revoked", "--reason", "decommissioned", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == digest.hex()

    # Its TBS refuses its handshake at once (its own store): certificate_revoked.
    with pytest.raises(MilagroSSLError) as refused:
        handshake_with_tbs(world, tbs, home, "pat-revoked")
    assert refused.value.alert == CERTIFICATE_REVOKED and refused.value.alert_sent is False
    # Its MAC-authenticated path (anonymous handshake) still answers 403 pat_revoked.
    state = PatHome(home).load()
    anonymous = Context(trust=PatHome(home).trust(), chain=world.source, headers=":memory:", check_revocation=False)
    with anonymous, httpx.Client(base_url=f"https://127.0.0.1:{tbs.port}", verify=anonymous, timeout=30) as http:
        response = http.get(f"/enrolments/{state.enrolment_id}/instructions",
                            params={"mac": poll_mac(PatHome(home).aes_key(), state.enrolment_id)},
                            extensions={"sni_hostname": "tbs-pat"})
    assert response.status_code == 403 and response.json()["error"] == "pat_revoked", response.text

    expected = {"revoked": True, "name": "pat-revoked", "certificate_digest": digest.hex(), "tbs": "tbs-pat"}
    with pytest.raises(PatRevoked) as revoked:
        update(home, min_confirmations=1)
    assert (revoked.value.digest, revoked.value.name, revoked.value.tbs) == (digest, "pat-revoked", "tbs-pat")
    with pytest.raises(PatRevoked) as revoked:
        connect(home, instructions_url, name="tbs-pat", min_confirmations=1)
    assert revoked.value.to_json() == expected
    for command in (("update", "--home", home), ("connect", "--home", home, instructions_url, "--name", "tbs-pat")):
        cli = pat_cli(*command, "--min-confirmations", "1")
        assert cli.returncode == 3, cli.stderr
        assert json.loads(cli.stdout) == expected
        assert "revoked by its TBS" in cli.stderr
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

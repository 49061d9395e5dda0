"""Revoking a batch-anchored PAT through the served TBS (``milagro tbs serve`` under gunicorn):
``milagro tbs admin revoke`` -> the TBS answers revoked at once (GET /chain/revocation/<digest>)
-> its worker anchors the list as the next link of its 0x04 chain -> a service Context with
batch_revocation=TbsRevocations.from_tbs(...) refuses the revoked PAT with certificate_revoked
(44) and serves the other -> the TBS itself refuses the revoked PAT's milagro-tls handshake with
44 too (its own Context checks its own store, roles.tbs.revocations.OwnPatRevocations), at once
and after the list is anchored, while its MAC-authenticated path answers 403 pat_revoked -> the
other PAT still gets its instructions, carrying its proof against the anchored list."""
from __future__ import annotations

import json
import socket

import httpx
import pytest

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.chain.hashes import to_display_hex
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.revocation_list import (REVOCATION_LIST, RevocationAnswer, TbsRevocations,
                                               check_not_revoked_in_list, revocation_list_root)
from milagro_tls.chain.rootchain import follow_root_chain
from milagro_tls.chain.tbs_source import TbsSource
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.context import Context
from milagro_tls.enrolment import open_instructions
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.locator import Locator
from milagro_tls.merkle import EMPTY_ROOT
from milagro_tls.trust import TrustEntry, TrustStore

from helpers.contexts import echo_server

from .patclient import PatClient, enrol_and_sign, wait_anchored_list

CERTIFICATE_REVOKED = 44
SERVER = "echo.example"


@pytest.fixture(scope="module")
def tbs(tbs_server):
    return tbs_server("tbs-revoking", batch_wait=6)


def answer_of(pat: PatClient, digest: bytes) -> dict:
    response = pat.get(f"/chain/revocation/{digest.hex()}")
    assert response.status_code == 200, response.text
    return response.json()


def connect(world, pat: PatClient, port: int) -> bytes:
    """One milagro-tls connection with the PAT's batch-anchored identity to the echo service."""
    identity = LocalIdentity.from_batch_pat(pat.pat, world.source)
    client = Context(identity=identity, chain=world.source, headers=":memory:", trust=world.trust(SERVER),
                     check_revocation=False)
    with client, client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname=SERVER) as tls:
        tls.sendall(b"ping")
        return tls.recv(4)


def refused_alert(world, pat: PatClient, port: int) -> int:
    with pytest.raises(MilagroSSLError) as refused:
        connect(world, pat, port)
    return refused.value.alert


def tbs_refusal(pat: PatClient) -> int:
    """The alert the TBS refuses ``pat``'s milagro-tls handshake with (its batch-anchored
    identity, a new connection): the MilagroSSLError under httpx's ConnectError."""
    with pytest.raises(httpx.ConnectError) as refused:
        pat.pat_instructions(0, fresh=True)
    error = refused.value
    while error is not None and not isinstance(error, MilagroSSLError):
        error = error.__cause__ or error.__context__
    assert error is not None, f"not a milagro-tls refusal: {refused.value!r}"
    assert error.alert_sent is False                # the TBS sent it
    return error.alert


def test_a_revoked_pat_is_answered_revoked_anchored_refused_and_gets_no_instructions(world, tbs, pats):
    kept, revoked = pats(2)
    enrol_and_sign([kept, revoked])
    for pat in (kept, revoked):
        pat.wait_status("anchored", mine=True)
        pat.pat.confirm(world.source)
    kept_digest, revoked_digest = kept.pat.certificate.digest(), revoked.pat.certificate.digest()

    # Before any revocation: absent from the empty list, no link.
    before = answer_of(kept, revoked_digest)
    assert (before["revoked"], before["root"], before["link"]) == (False, EMPTY_ROOT.hex(), None)
    assert RevocationAnswer.from_json(before).proof is not None
    bad = kept.get("/chain/revocation/" + "zz" * 32)
    assert bad.status_code == 400 and bad.json()["error"]
    first = open_instructions(kept.aes_key, kept.instructions().content, tbs.party().key.public_key)
    assert first.revocation is not None and first.revocation.pat.revoked is False
    assert first.revocation.pat.root == EMPTY_ROOT
    # Both connect to the TBS with their anchored identity and get instructions.
    for pat in (kept, revoked):
        response = pat.pat_instructions(0)
        assert response.status_code == 200, response.text

    # The verifier: a service accepting these PATs, checking them with their TBS.
    tbs_source = TbsSource(tbs.base_url, network=world.source.network)
    checker = TbsRevocations.from_tbs(tbs_source, Locator.from_json(tbs.locator), world.source,
                                      HeaderChain(":memory:", world.source.network))
    assert checker.tbs.certificate.digest() == tbs.party().certificate.digest()
    service = Context(identity=world.identities[SERVER], chain=world.source, headers=":memory:",
                      trust=TrustStore([TrustEntry.from_json(p.pat.trust_entry()) for p in (kept, revoked)]),
                      min_confirmations=1, batch_revocation=checker)
    with tbs_source, service, echo_server(service) as (port, errors):
        assert connect(world, kept, port) == b"ping"
        assert connect(world, revoked, port) == b"ping"

        done = tbs.milagro("admin", "revoke", "--pat", revoked.pat.name, "--reason", "stolen", "--yes")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert (doc["digest"], doc["revoked"], doc["new"], doc["enrolled_here"], doc["pat"]) == \
            (revoked_digest.hex(), True, True, True, revoked.pat.name)

        # Revoked at once (the TBS's word), whether or not its list is anchored yet: by the
        # service, and by the TBS itself (its own store) on the revoked PAT's next handshake.
        assert answer_of(kept, revoked_digest) == {"revoked": True}
        assert refused_alert(world, revoked, port) == CERTIFICATE_REVOKED
        assert connect(world, kept, port) == b"ping"
        assert tbs_refusal(revoked) == CERTIFICATE_REVOKED
        assert kept.pat_instructions(0, fresh=True).status_code == 200

        # The worker anchors list 1 = {revoked}; once mined it is the current 0x04 link.
        listed = wait_anchored_list(tbs, 1)
        assert listed.root == revocation_list_root([revoked_digest])
        world.source.mine(1)
        headers = world.headers()
        identity, proof = resolve_anchor(Locator.from_json(tbs.locator), tbs.party().certificate, world.source,
                                         headers)
        view = follow_root_chain(identity, proof.tx, REVOCATION_LIST, world.source, headers)
        headers.close()
        assert view.pending_txid is None and view.current.number == 1
        assert view.current.root == listed.root and view.current.txid_hex == listed.txid

        # The other PAT's answer is now against that list, and holds against the chain.
        answer = answer_of(kept, kept_digest)
        assert (answer["revoked"], answer["root"], answer["link"]) == \
            (False, listed.root.hex(), {"txid": listed.txid, "number": 1})
        check_not_revoked_in_list(kept_digest, RevocationAnswer.from_json(answer).proof, listed.root, view)
        assert connect(world, kept, port) == b"ping"
        assert refused_alert(world, revoked, port) == CERTIFICATE_REVOKED
    refusals = [e for e in errors if isinstance(e, MilagroSSLError)]
    assert [e.alert for e in refusals] == [CERTIFICATE_REVOKED] * 2 and len(errors) == 2

    # No more instructions for the revoked PAT, on either path: its handshake with its anchored
    # identity is refused (44), the MAC path (anonymous handshake) answers 403 pat_revoked.
    # The other's carry its proof.
    assert tbs_refusal(revoked) == CERTIFICATE_REVOKED
    response = revoked.instructions()
    assert response.status_code == 403 and response.json()["error"] == "pat_revoked", response.text
    newer = kept.pat_instructions(0, fresh=True)
    assert newer.status_code == 200, newer.text
    update = open_instructions(kept.aes_key, newer.content, tbs.party().key.public_key)
    assert update.revocation.pat.to_json() == answer_of(kept, kept_digest)
    assert (update.revocation.pat.link_txid, update.revocation.pat.link_number) == \
        (view.current.txid, 1)

    # Revoking again changes nothing; a second revocation is the next list.
    again = json.loads(tbs.milagro("admin", "revoke", "--digest", revoked_digest.hex(), "--yes").stdout)
    assert again["new"] is False and again["list_number"] == 1
    assert json.loads(tbs.milagro("admin", "revoke", "--digest", kept_digest.hex(), "--yes").stdout)["new"] is True
    second = wait_anchored_list(tbs, 2)
    assert second.root == revocation_list_root([revoked_digest, kept_digest])
    assert to_display_hex(view.current.txid) != second.txid

"""The relying service's M-Pin endpoints (Flask app over a SQLite store, reached by httpx through
WSGITransport) and the client library's combining, with shares issued in-process by two D-TAs'
master secrets. The served processes (real D-TAs, IdP, gunicorn) are in tests/roles/dta/test_end_to_end.py."""
from __future__ import annotations

import os
import stat

import httpx
import pytest

from milagro_tls.chain.network import Network
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.locator import Locator, LocatorKind
from milagro_tls.mpin import (
    Challenge, MasterSecret, MpinServer, ShareMismatch, ShareSignatureError, SignedShare, combine_g1, combine_g2,
    encode_g1,
    encode_identity, issue_client_secret, issue_server_secret, issue_time_permit, server_secret_share,
    today, verify_share,
)
from milagro_tls.roles.dta.client import (
    ClientShares, DtaError, MpinCredential, ServiceRejected, combine_shares, credential_path, mpin_authenticate,
)
from milagro_tls.roles.service import sessions
from milagro_tls.roles.service.app import ServiceConfig, create_app
from milagro_tls.roles.service.serversecret import read_server_secret, write_server_secret
from milagro_tls.roles.store import open_store

ISSUER, SUB, PIN = "https://idp.example", "alice", "4321"
ID = encode_identity(ISSUER, SUB)
BASE = "http://service.test"


def locator(n: int) -> Locator:
    return Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=bytes([n]) * 32, input_index=0,
                   block_hash=bytes([n + 1]) * 32)


CLIENT = locator(50)


class Dta:
    """A D-TA's secrets in-process: master secret, identity key, locator."""

    def __init__(self, tmp_path, n: int) -> None:
        self.name = f"dta-{n}"
        self.master = MasterSecret.create(tmp_path / f"master-{n}.key")
        self.key = IdentityKey.generate()
        self.locator = locator(n)

    def shares(self, date: int | None = None, recipient: Locator = CLIENT) -> ClientShares:
        common = dict(identity=ID, dta=self.name, dta_locator=self.locator, recipient=recipient)
        cs = issue_client_secret(self.master, self.key, **common)
        tp = issue_time_permit(self.master, self.key, date=today() if date is None else date, **common)
        # What DtaClient.fetch_client_shares does with each share before it returns them.
        for share in (cs, tp):
            verify_share(share, self.key.public_key, recipient=recipient, dta_locator=self.locator)
        return ClientShares(cs, tp, {}, self.locator)


@pytest.fixture
def dtas(tmp_path):
    return Dta(tmp_path, 1), Dta(tmp_path, 2), Dta(tmp_path, 3)      # the third is unrelated


@pytest.fixture
def service(tmp_path, dtas):
    a, b, _ = dtas
    server_shares = [issue_server_secret(d.master, d.key, dta=d.name, dta_locator=d.locator, recipient=locator(70))
                     for d in (a, b)]
    store = open_store(None, tmp_path)
    sessions.migrate(store)
    app = create_app(ServiceConfig(store=store, server=MpinServer(combine_g2(s.point for s in server_shares)),
                                   dtas=[{"name": a.name}, {"name": b.name}]))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE) as http:
        yield http
    store.close()


def test_two_dtas_shares_combined_authenticate_and_each_session_is_used_once(service, dtas, tmp_path):
    a, b, _ = dtas
    credential = combine_shares([a.shares(), b.shares()], PIN)
    path = credential.save(credential_path(tmp_path / "home", "alice"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credential = MpinCredential.load(path)
    assert credential.dtas == (a.locator.to_json(), b.locator.to_json())
    assert mpin_authenticate(service, BASE, credential, PIN) == {
        "authenticated": True, "id": ID.hex(), "issuer": ISSUER, "sub": SUB}

    # A recorded pass 2 replayed: the session was consumed by the first use.
    attempt = credential.client()
    first = service.post("/mpin/pass1", json=attempt.pass1().to_json()).json()
    answer = {"session": first["session"], **attempt.pass2(Challenge.from_json({"y": first["y"]}), PIN).to_json()}
    assert service.post("/mpin/pass2", json=answer).status_code == 200
    replay = service.post("/mpin/pass2", json=answer)
    assert replay.status_code == 401 and replay.json()["error"] == "unknown-session"


def test_the_token_is_not_the_key_and_the_file_is_guarded(dtas, tmp_path):
    a, b, _ = dtas
    shares = [a.shares(), b.shares()]
    credential = combine_shares(shares, PIN)
    client_secret = combine_g1(s.client_secret.point for s in shares)
    assert credential.token != client_secret                       # CS − PIN·H(ID), not CS
    assert encode_g1(credential.token).hex() not in repr(credential)
    path = credential.save(tmp_path / "credential.json")
    os.chmod(path, 0o644)
    with pytest.raises(DtaError, match="chmod 600"):
        MpinCredential.load(path)


def test_wrong_pin_is_refused_by_the_pairing(service, dtas):
    a, b, _ = dtas
    credential = combine_shares([a.shares(), b.shares()], PIN)
    with pytest.raises(ServiceRejected) as refused:
        mpin_authenticate(service, BASE, credential, "4322")
    assert refused.value.status == 401 and refused.value.reason == "authentication-failed"


def test_one_share_alone_is_refused_by_the_library_and_by_the_service(service, dtas):
    a, _, _ = dtas
    with pytest.raises(ValueError, match="at least 2 D-TAs"):
        combine_shares([a.shares()], PIN)
    alone = combine_shares([a.shares()], PIN, min_dtas=1)
    with pytest.raises(ServiceRejected) as refused:
        mpin_authenticate(service, BASE, alone, PIN)
    assert refused.value.status == 401 and refused.value.reason == "authentication-failed"


def test_a_share_from_an_unrelated_third_dta(service, dtas):
    a, b, c = dtas
    foreign = c.shares()
    # Presented as D-TA b's, its signature fails under b's anchored key ...
    with pytest.raises(ShareSignatureError):
        verify_share(foreign.client_secret, b.key.public_key)
    # ... and combined in b's place it does not make the service's key.
    credential = combine_shares([a.shares(), foreign], PIN)
    with pytest.raises(ServiceRejected) as refused:
        mpin_authenticate(service, BASE, credential, PIN)
    assert refused.value.status == 401 and refused.value.reason == "authentication-failed"


def test_an_expired_time_permit_is_refused_before_the_pairing(service, dtas):
    a, b, _ = dtas
    yesterday = today() - 1
    credential = combine_shares([a.shares(date=yesterday), b.shares(date=yesterday)], PIN)
    with pytest.raises(ServiceRejected) as refused:
        mpin_authenticate(service, BASE, credential, PIN)
    assert refused.value.status == 401 and refused.value.reason == "expired-permit"
    assert str(yesterday) in refused.value.body["error_description"]


def test_a_tampered_share_fails_its_signature(dtas):
    a, b, _ = dtas
    doc = a.shares().client_secret.to_json()
    doc["share"]["point"] = b.shares().client_secret.to_json()["share"]["point"]   # a valid point, not a's
    with pytest.raises(ShareSignatureError):
        verify_share(SignedShare.from_json(doc), a.key.public_key)
    doc = a.shares().time_permit.to_json()
    doc["share"]["date"] += 1
    with pytest.raises(ShareSignatureError):
        verify_share(SignedShare.from_json(doc), a.key.public_key)


def test_combining_refuses_mixed_identities_days_and_the_same_dta_twice(dtas):
    a, b, _ = dtas
    with pytest.raises(ShareMismatch, match="same D-TA"):
        combine_shares([a.shares(), a.shares()], PIN)
    with pytest.raises(ShareMismatch, match="different days"):
        combine_shares([a.shares(), b.shares(date=today() - 1)], PIN)
    mixed = ClientShares(a.shares().client_secret, b.shares().time_permit, {}, a.locator)
    with pytest.raises(ShareMismatch, match="different D-TAs"):
        combine_shares([mixed, b.shares()], PIN)


def test_malformed_messages_get_400_json(service):
    bad = service.post("/mpin/pass1", json={"id": "zz", "date": 1, "u": "00"})
    assert bad.status_code == 400 and bad.json()["error"] == "malformed-message"
    no_session = service.post("/mpin/pass2", json={"v": "00"})
    assert no_session.status_code == 400 and no_session.json()["error"] == "malformed-message"
    not_json = service.post("/mpin/pass1", content=b"\xff", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"] == "malformed-message"
    missing = service.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_server_secret_file_is_0600_and_round_trips(dtas, tmp_path):
    a, b, _ = dtas
    secret = combine_g2([server_secret_share(a.master), server_secret_share(b.master)])
    path = tmp_path / "mpin" / "server-secret.json"
    write_server_secret(path, secret, [{"name": a.name}])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_server_secret(path) == (secret, [{"name": a.name}])

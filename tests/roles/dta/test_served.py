"""The D-TA as deployed: ``milagro dta serve`` under gunicorn against the world's chain, relying
on a served IdP that it pins from the chain (a Context over httpx). Parties speak milagro-tls
(a Bitcoin suite) to the D-TA; the person's browser (httpx) reaches both over the X.509
fallback. Shares are verified against the D-TA's anchored key, the CLI registers a service and
revokes a user."""
from __future__ import annotations

import json
import ssl
import time

import httpx
import pytest

from interop.oidc.person import Person, parse
from milagro_tls.context import Context
from milagro_tls.mpin import MpinIdentity, ShareKind, SignedShare, day_number, verify_share
from milagro_tls.trust import TrustEntry, TrustStore

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def dta(dta_server, idp_for_dta):
    return dta_server("dta-served", idp=idp_for_dta)


class PartyClient:
    """An anchored party of the world speaking milagro-tls to the D-TA, which it pins."""

    def __init__(self, world, dta, identity: str | None) -> None:
        entry = TrustEntry.from_json(dta.trust_entry("dta.pinned"))
        self.context = Context(identity=world.identities[identity] if identity else None,
                               trust=TrustStore([entry]), chain=world.source, headers=":memory:")
        self.http = httpx.Client(base_url=dta.base_url, verify=self.context, timeout=60)

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.post(path, json=body or {}, extensions={"sni_hostname": "dta.pinned"})

    def close(self) -> None:
        self.http.close()
        self.context.close()


@pytest.fixture
def party(world, dta):
    clients: list[PartyClient] = []

    def make(identity: str | None = "alice") -> PartyClient:
        clients.append(PartyClient(world, dta, identity))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def person(idp, dta) -> Person:
    someone = Person("alice", PASSWORD, idp.ca_file)
    context = ssl.create_default_context(cafile=idp.ca_file)
    context.load_verify_locations(cafile=dta.ca_file)
    someone.http = httpx.Client(verify=context, follow_redirects=False, timeout=30)
    return someone


def test_a_person_logs_in_by_browser_and_the_party_gets_signed_shares(world, dta, idp_for_dta, party):
    alice = party("alice")
    started = alice.post("/login/start", {"idp": idp_for_dta.issuer, "method": "code"})
    assert started.status_code == 200, started.text
    browser_url = started.json()["browser_url"]
    assert browser_url.startswith(dta.base_url + "/login/browser/")

    someone = person(idp_for_dta, dta)
    try:
        page = someone.walk(browser_url)          # D-TA -> IdP login and consent -> D-TA /callback
    finally:
        someone.close()
    assert page.status_code == 200 and "login-done" in parse(page.text).ids, (page.text, someone.trail)
    callback = [url for method, url, _ in someone.trail if "/callback?" in url]
    assert callback and f"iss={idp_for_dta.issuer.replace(':', '%3A').replace('/', '%2F')}" in callback[0]

    nonce = {"login_nonce": started.json()["login_nonce"]}
    assert alice.post("/login/poll", nonce).json() == {"status": "done"}
    shares = alice.post("/shares/client", nonce)
    assert shares.status_code == 200, shares.text
    doc = shares.json()
    dta_party = dta.party()
    identity = bytes.fromhex(doc["id"])
    assert MpinIdentity.decode(identity).issuer == idp_for_dta.issuer
    alice_locator = world.parties["alice"].locator
    verify_share(SignedShare.from_json(doc["client_secret"]), dta_party.key.public_key, kind=ShareKind.CLIENT_SECRET,
                 identity=identity, recipient=alice_locator, dta_locator=dta_party.locator)
    verify_share(SignedShare.from_json(doc["time_permit"]), dta_party.key.public_key, kind=ShareKind.TIME_PERMIT,
                 identity=identity, date=day_number(time.time()), recipient=alice_locator)
    again = alice.post("/shares/client", nonce)
    assert again.status_code == 409 and again.json()["error"] == "nonce_used"
    assert doc["sub"] == alice_sub(idp_for_dta)


def test_a_thing_logs_in_with_the_device_grant(world, dta, idp_for_dta, party):
    thing = party("mallory.example")
    started = thing.post("/login/start", {"idp": idp_for_dta.issuer, "method": "device"})
    assert started.status_code == 200, started.text
    doc = started.json()
    assert doc["verification_uri"] == f"{idp_for_dta.issuer}/device" and doc["interval"] >= 5
    someone = person(idp_for_dta, dta)
    try:
        someone.approve_device(doc["verification_uri_complete"])
    finally:
        someone.close()
    nonce = {"login_nonce": doc["login_nonce"]}
    deadline = time.monotonic() + 60
    while (status := thing.post("/login/poll", nonce).json())["status"] == "pending":
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status == {"status": "done"}
    shares = thing.post("/shares/client", nonce)
    assert shares.status_code == 200 and shares.json()["time_permit"]["share"]["kind"] == "time-permit"


def test_server_shares_only_for_a_service_registered_from_the_command_line(world, dta, party, tmp_path):
    service = party("echo.example")
    refused = service.post("/shares/server")
    assert refused.status_code == 403 and refused.json()["error"] == "service_not_registered"
    locator_file = tmp_path / "service.json"
    locator_file.write_text(json.dumps(world.parties["echo.example"].locator.to_json()))
    added = dta.milagro("service", "add", "--locator-file", str(locator_file), "--name", "echo-service")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["name"] == "echo-service"
    answer = service.post("/shares/server")
    assert answer.status_code == 200, answer.text
    share = verify_share(SignedShare.from_json(answer.json()["server_secret"]), dta.party().key.public_key,
                         kind=ShareKind.SERVER_SECRET, recipient=world.parties["echo.example"].locator)
    assert share.identity is None


def test_plain_https_gets_no_login_and_an_anonymous_milagro_client_neither(dta, idp_for_dta, party):
    with httpx.Client(verify=ssl.create_default_context(cafile=dta.ca_file), timeout=30) as browser:
        refused = browser.post(dta.base_url + "/login/start", json={"idp": idp_for_dta.issuer, "method": "code"})
        assert refused.status_code == 401
        assert refused.json() == {"error": "milagro_tls_required", "error_description":
                                  "this endpoint answers only an anchored party over milagro-tls (a Bitcoin suite)"}
        assert browser.get(dta.base_url + "/healthz").json() == {"status": "ok", "idps": [idp_for_dta.issuer]}
        certificate = browser.get(dta.base_url + "/.well-known/milagro/birth-certificate")
        assert certificate.status_code == 200 and certificate.content == dta.party().certificate.canonical_bytes()
    anonymous = party(None)
    assert anonymous.post("/login/start", {"idp": idp_for_dta.issuer, "method": "code"}).status_code == 401


def test_a_user_revoked_from_the_command_line_gets_no_shares(world, dta_server, idp_for_dta):
    """A second D-TA (its own home and master secret): alice logs in, is revoked, gets nothing."""
    other = dta_server("dta-revoking", idp=idp_for_dta)
    alice = PartyClient(world, other, "alice")
    try:
        started = alice.post("/login/start", {"idp": idp_for_dta.issuer, "method": "code"}).json()
        someone = person(idp_for_dta, other)
        try:
            assert "login-done" in parse(someone.walk(started["browser_url"]).text).ids
        finally:
            someone.close()
        revoked = other.milagro("user", "revoke", "--issuer", idp_for_dta.issuer, f"--sub={alice_sub(idp_for_dta)}")
        assert revoked.returncode == 0, revoked.stderr
        refused = alice.post("/shares/client", {"login_nonce": started["login_nonce"]})
        assert refused.status_code == 403
        assert refused.json() == {"error": "user_revoked", "error_description": "this user is revoked at this D-TA"}
    finally:
        alice.close()


def alice_sub(idp) -> str:
    """alice's sub at the IdP, from its store (the IdP's own table)."""
    from sqlalchemy import select

    from milagro_tls.roles.idp import tables as idp_tables
    from milagro_tls.roles.store import open_store
    store = open_store(None, idp.home)
    try:
        with store.read() as connection:
            return connection.execute(select(idp_tables.users.c.sub).where(idp_tables.users.c.username == "alice")).scalar_one()
    finally:
        store.close()


def test_an_idp_reached_over_ordinary_https_with_its_ca_file(world, dta_server, idp_for_dta):
    """--idp-ca instead of --idp-trust (an IdP with only X.509): the same login works."""
    plain = dta_server("dta-x509", idp=idp_for_dta, pinned=False)
    alice = PartyClient(world, plain, "alice")
    try:
        started = alice.post("/login/start", {"idp": idp_for_dta.issuer, "method": "code"}).json()
        someone = person(idp_for_dta, plain)
        try:
            assert "login-done" in parse(someone.walk(started["browser_url"]).text).ids
        finally:
            someone.close()
        shares = alice.post("/shares/client", {"login_nonce": started["login_nonce"]})
        assert shares.status_code == 200 and shares.json()["sub"] == alice_sub(idp_for_dta)
    finally:
        alice.close()
    assert "--idp-ca" in " ".join(plain.process.args) and "--idp-trust" not in " ".join(plain.process.args)


def test_an_issuance_receipt_is_anchored_and_its_inclusion_verifies_against_the_chain(world, dta_server, idp_for_dta):
    """A D-TA with 2-second log periods: the receipt's leaf is in a root on the D-TA's own
    anchor chain, checked against headers alone."""
    from milagro_tls.chain.verify import resolve_anchor
    from milagro_tls.roles.activitylog import verify_log_inclusion

    logging_dta = dta_server("dta-log", idp=idp_for_dta, period=2)
    alice = PartyClient(world, logging_dta, "alice")
    try:
        started = alice.post("/login/start", {"idp": idp_for_dta.issuer, "method": "code"}).json()
        someone = person(idp_for_dta, logging_dta)
        try:
            assert "login-done" in parse(someone.walk(started["browser_url"]).text).ids
        finally:
            someone.close()
        receipt = alice.post("/shares/client", {"login_nonce": started["login_nonce"]}).json()["receipt"]
    finally:
        alice.close()
    leaf = bytes.fromhex(receipt["leaf"])
    with httpx.Client(verify=ssl.create_default_context(cafile=logging_dta.ca_file), timeout=30) as http:
        deadline = time.monotonic() + 90
        while True:
            found = http.get(logging_dta.base_url + "/.well-known/milagro/activity-log/inclusion",
                             params={"leaf": leaf.hex()})
            if found.status_code == 200:
                break
            assert found.status_code == 409, found.text              # not anchored yet
            assert time.monotonic() < deadline, logging_dta.log()[-3000:]
            world.source.mine(1)
            time.sleep(0.5)
    world.source.mine(1)
    party = logging_dta.party()
    headers = world.headers()
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, headers)
    verified = verify_log_inclusion(found.json(), leaf, identity, proof.tx, world.source, headers)
    assert verified.period == receipt["period"]

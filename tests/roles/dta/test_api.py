"""The D-TA's HTTP API through the Flask test client: a fake milagro-tls peer in
environ["gunicorn.socket"], a fake IdP behind httpx.MockTransport (fakes.py). Each refusal is
checked with its exact status and JSON body."""
from __future__ import annotations

import hashlib
import json
import struct
from urllib.parse import parse_qs, urlsplit

import pytest

from sqlalchemy import select

from milagro_tls.mpin import MpinIdentity, ShareKind, SignedShare, day_number, verify_share
from milagro_tls.roles.activitylog import LeafNotAnchored
from milagro_tls.roles.dta import tables
from milagro_tls.roles.dta.issuance import add_service, revoke_user

from .rig import BASE_URL
from .fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, rsa_key


def start_code_login(unit, party):
    started = unit.as_party(party).post("/login/start", json={"idp": ISSUER, "method": "code"})
    assert started.status_code == 200, started.get_json()
    return started.get_json()


def browser_login(unit, started, *, sub="alice-sub", tweak=None):
    """The browser's part: /login/browser -> the IdP -> /callback. Returns the callback response."""
    redirect = unit.browser.get(urlsplit(started["browser_url"]).path)
    assert redirect.status_code == 302
    params = unit.idp.authorize(redirect.headers["Location"], sub=sub)
    if tweak:
        params = tweak(params)
    return unit.browser.get("/callback", query_string=params)


def logged_in(unit, party, sub="alice-sub") -> str:
    started = start_code_login(unit, party)
    done = browser_login(unit, started, sub=sub)
    assert done.status_code == 200 and 'id="login-done"' in done.get_data(as_text=True), done.get_data(as_text=True)
    return started["login_nonce"]


# --- the happy paths --------------------------------------------------------------------------
def test_registration_at_first_start_is_kept(dta_unit):
    (body,) = dta_unit.idp.registered
    assert body["redirect_uris"] == [f"{BASE_URL}/callback"] and body["token_endpoint_auth_method"] == "client_secret_basic"
    assert set(body["grant_types"]) == {"authorization_code", "urn:ietf:params:oauth:grant-type:device_code"}
    assert dta_unit.provider.client_id == CLIENT_ID
    with dta_unit.store.read() as connection:
        row = connection.execute(select(tables.idps)).one()
    assert "client_secret" not in json.loads(row.registration)      # the secret is in a 0600 key file only
    assert CLIENT_SECRET not in row.registration and dta_unit.provider.client_secret == CLIENT_SECRET
    assert (int(__import__("os").stat(row.secret_file).st_mode) & 0o777) == 0o600


def test_code_login_then_client_shares_signed_for_the_party(dta_unit):
    started = start_code_login(dta_unit, dta_unit.alice)
    assert set(started) == {"login_nonce", "browser_url", "expires_in"} and started["expires_in"] == 600
    redirect = dta_unit.browser.get(urlsplit(started["browser_url"]).path)
    query = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["Location"]).query).items()}
    assert redirect.headers["Location"].startswith(f"{ISSUER}/authorize?")
    assert query["code_challenge_method"] == "S256" and query["redirect_uri"] == f"{BASE_URL}/callback"
    assert query["scope"] == "openid" and len(query["nonce"]) >= 32 and len(query["state"]) >= 32

    done = browser_login(dta_unit, started)
    assert done.status_code == 200 and "alice-sub" in done.get_data(as_text=True)
    party = dta_unit.as_party(dta_unit.alice)
    assert party.post("/login/poll", json={"login_nonce": started["login_nonce"]}).get_json() == {"status": "done"}

    answer = party.post("/shares/client", json={"login_nonce": started["login_nonce"]})
    assert answer.status_code == 200, answer.get_json()
    doc = answer.get_json()
    identity = MpinIdentity(ISSUER, "alice-sub").encoded
    today = day_number(dta_unit.clock.now)
    cs = verify_share(SignedShare.from_json(doc["client_secret"]), dta_unit.key.public_key,
                      kind=ShareKind.CLIENT_SECRET, identity=identity, recipient=dta_unit.alice,
                      dta_locator=dta_unit.dta_locator)
    tp = verify_share(SignedShare.from_json(doc["time_permit"]), dta_unit.key.public_key,
                      kind=ShareKind.TIME_PERMIT, identity=identity, date=today, recipient=dta_unit.alice)
    assert doc["id"] == identity.hex() and doc["date"] == today and cs.dta == "dta-test"
    # The receipt's leaf, recomputed from its salt, the ID, the period and both shares' digests.
    receipt = doc["receipt"]
    digest = hashlib.sha256(cs.digest() + tp.digest()).digest()
    assert receipt["share_digest"] == digest.hex()
    leaf = hashlib.sha256(bytes.fromhex(receipt["salt"]) + struct.pack(">H", len(identity)) + identity
                          + struct.pack(">Q", receipt["period"]) + digest).digest()
    assert receipt["leaf"] == leaf.hex()
    with dta_unit.store.read() as connection:
        issued = connection.execute(select(tables.issued.c.kind, tables.issued.c.share_sha256)).all()
    assert sorted(issued) == sorted([("client-secret", cs.digest().hex()), ("time-permit", tp.digest().hex())])


def test_device_login_polls_the_idp_honouring_slow_down(dta_unit):
    party = dta_unit.as_party(dta_unit.bob)
    started = party.post("/login/start", json={"idp": ISSUER, "method": "device"}).get_json()
    assert started["user_code"].startswith("ABCD-") and started["interval"] == 5
    assert started["verification_uri"] == f"{ISSUER}/device" and "browser_url" not in started
    nonce = {"login_nonce": started["login_nonce"]}

    def poll():
        return party.post("/login/poll", json=nonce).get_json()

    dta_unit.clock.now += 5
    assert poll() == {"status": "pending", "interval": 5}
    polled = len(dta_unit.idp.requests)
    assert poll() == {"status": "pending", "interval": 5}           # too early: the IdP is not asked
    assert len(dta_unit.idp.requests) == polled
    dta_unit.idp.approve_device(started["user_code"], status="slow_down")
    dta_unit.clock.now += 5
    assert poll() == {"status": "pending", "interval": 10}
    dta_unit.idp.approve_device(started["user_code"], sub="thermostat-7")
    dta_unit.clock.now += 5
    assert poll() == {"status": "pending", "interval": 10}          # waits the longer interval
    dta_unit.clock.now += 5
    assert poll() == {"status": "done"}
    shares = party.post("/shares/client", json=nonce)
    assert shares.status_code == 200 and shares.get_json()["sub"] == "thermostat-7"


def test_a_device_login_denied_at_the_idp(dta_unit):
    party = dta_unit.as_party(dta_unit.bob)
    started = party.post("/login/start", json={"idp": ISSUER, "method": "device"}).get_json()
    dta_unit.idp.approve_device(started["user_code"], status="denied")
    dta_unit.clock.now += 5
    assert party.post("/login/poll", json={"login_nonce": started["login_nonce"]}).get_json() == {"status": "denied"}
    refused = party.post("/shares/client", json={"login_nonce": started["login_nonce"]})
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "login_required", "error_description": "the login is denied, not done"}


def test_server_share_for_a_registered_service(dta_unit):
    service = dta_unit.bob
    add_service(dta_unit.store, service, "checkout")
    answer = dta_unit.as_party(service).post("/shares/server")
    assert answer.status_code == 200
    doc = answer.get_json()
    share = verify_share(SignedShare.from_json(doc["server_secret"]), dta_unit.key.public_key,
                         kind=ShareKind.SERVER_SECRET, recipient=service)
    assert share.identity is None and doc["service"] == "checkout"
    # Logged like a client share: the leaf hides the service's locator behind the receipt's salt.
    receipt = doc["receipt"]
    ident = service.encode()
    leaf = hashlib.sha256(bytes.fromhex(receipt["salt"]) + struct.pack(">H", len(ident)) + ident
                          + struct.pack(">Q", receipt["period"]) + share.digest()).digest()
    assert receipt["leaf"] == leaf.hex() and receipt["share_digest"] == share.digest().hex()
    with pytest.raises(LeafNotAnchored):           # in the log, waiting for its period's root
        dta_unit.log.inclusion(leaf)


# --- refusals (issue 15's server-side negative tests) ---------------------------------------
def test_a_share_request_without_a_login(dta_unit):
    party = dta_unit.as_party(dta_unit.alice)
    unknown = party.post("/shares/client", json={"login_nonce": "never-issued"})
    assert unknown.status_code == 403
    assert unknown.get_json() == {"error": "login_required",
                                  "error_description": "no login with this nonce: start one with /login/start"}
    started = start_code_login(dta_unit, dta_unit.alice)          # started, never finished
    pending = party.post("/shares/client", json={"login_nonce": started["login_nonce"]})
    assert pending.status_code == 403
    assert pending.get_json() == {"error": "login_required", "error_description": "the login is pending, not done"}


def test_a_login_nonce_presented_by_another_locator(dta_unit):
    nonce = logged_in(dta_unit, dta_unit.alice)
    thief = dta_unit.as_party(dta_unit.bob)
    for path in ("/shares/client", "/login/poll"):
        refused = thief.post(path, json={"login_nonce": nonce})
        assert refused.status_code == 403
        assert refused.get_json() == {"error": "wrong_party",
                                      "error_description": "this login was started by another party (locator)"}
    # The rightful party still gets its shares afterwards.
    assert dta_unit.as_party(dta_unit.alice).post("/shares/client", json={"login_nonce": nonce}).status_code == 200


def test_an_id_token_for_another_audience(dta_unit):
    dta_unit.idp.id_token_claims = {"aud": "another-client"}
    started = start_code_login(dta_unit, dta_unit.alice)
    refused = browser_login(dta_unit, started)
    assert refused.status_code == 400
    assert refused.get_json() == {"error": "invalid_id_token",
                                  "error_description": "the ID token is for another audience, not this D-TA's client_id"}
    party = dta_unit.as_party(dta_unit.alice)
    poll = party.post("/login/poll", json={"login_nonce": started["login_nonce"]}).get_json()
    assert poll["status"] == "denied"
    assert party.post("/shares/client", json={"login_nonce": started["login_nonce"]}).status_code == 403


def test_an_id_token_with_another_nonce_or_a_foreign_signature(dta_unit):
    dta_unit.idp.id_token_claims = {"nonce": "replayed"}
    refused = browser_login(dta_unit, start_code_login(dta_unit, dta_unit.alice))
    assert refused.status_code == 400
    assert refused.get_json() == {"error": "invalid_id_token",
                                  "error_description": "the ID token's nonce is not the one this login sent"}
    dta_unit.idp.id_token_claims = {}
    dta_unit.idp.signing_key = rsa_key("forger")                 # same kid, another key
    forged = browser_login(dta_unit, start_code_login(dta_unit, dta_unit.alice))
    assert forged.status_code == 400 and forged.get_json()["error"] == "invalid_id_token"
    assert forged.get_json()["error_description"].startswith("the ID token's signature does not verify")


def test_an_authorization_response_with_the_wrong_iss(dta_unit):
    started = start_code_login(dta_unit, dta_unit.alice)
    refused = browser_login(dta_unit, started, tweak=lambda p: {**p, "iss": "https://evil.test"})
    assert refused.status_code == 400
    assert refused.get_json() == {
        "error": "invalid_iss",
        "error_description": "the authorization response comes from 'https://evil.test', not the login's IdP "
                             "'https://idp.test' (RFC 9207)"}
    # The IdP advertises iss, so a response without it is refused too.
    missing = browser_login(dta_unit, start_code_login(dta_unit, dta_unit.alice),
                            tweak=lambda p: {k: v for k, v in p.items() if k != "iss"})
    assert missing.status_code == 400
    assert missing.get_json() == {"error": "invalid_iss", "error_description":
                                  "https://idp.test sends iss in every authorization response and this one has none "
                                  "(RFC 9207)"}
    # Nothing was redeemed at the token endpoint for either.
    assert not [r for r in dta_unit.idp.requests if r.url.path == "/token"]


def test_a_revoked_user(dta_unit):
    nonce = logged_in(dta_unit, dta_unit.alice, sub="mallory-sub")
    assert revoke_user(dta_unit.store, ISSUER, "mallory-sub")
    refused = dta_unit.as_party(dta_unit.alice).post("/shares/client", json={"login_nonce": nonce})
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "user_revoked", "error_description": "this user is revoked at this D-TA"}
    with dta_unit.store.read() as connection:
        assert connection.execute(select(tables.issued)).first() is None


def test_a_server_share_request_by_an_unregistered_service(dta_unit):
    refused = dta_unit.as_party(dta_unit.alice).post("/shares/server")
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "service_not_registered", "error_description":
                                  "this party is not a relying service registered with this D-TA "
                                  "(milagro dta service add)"}


def test_a_reused_nonce(dta_unit):
    nonce = logged_in(dta_unit, dta_unit.alice)
    party = dta_unit.as_party(dta_unit.alice)
    assert party.post("/shares/client", json={"login_nonce": nonce}).status_code == 200
    again = party.post("/shares/client", json={"login_nonce": nonce})
    assert again.status_code == 409
    assert again.get_json() == {"error": "nonce_used", "error_description":
                                "shares were already issued for this login; start a new one"}


def test_a_login_older_than_the_share_window(dta_unit):
    nonce = logged_in(dta_unit, dta_unit.alice)
    dta_unit.clock.now += 301
    refused = dta_unit.as_party(dta_unit.alice).post("/shares/client", json={"login_nonce": nonce})
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "login_expired", "error_description":
                                  "the login finished more than 300 s ago"}


def test_a_login_not_finished_in_time_expires(dta_unit):
    started = start_code_login(dta_unit, dta_unit.alice)
    dta_unit.clock.now += 601
    party = dta_unit.as_party(dta_unit.alice)
    assert party.post("/login/poll", json={"login_nonce": started["login_nonce"]}).get_json() == {"status": "expired"}
    late = browser_login_after_expiry(dta_unit, started)
    assert late.status_code == 409
    assert late.get_json() == {"error": "login_not_pending", "error_description": "this login is expired"}


def browser_login_after_expiry(unit, started):
    return unit.browser.get(urlsplit(started["browser_url"]).path)


def test_the_callback_in_another_browser_is_refused(dta_unit):
    started = start_code_login(dta_unit, dta_unit.alice)
    redirect = dta_unit.browser.get(urlsplit(started["browser_url"]).path)
    params = dta_unit.idp.authorize(redirect.headers["Location"])
    other = dta_unit.app.test_client()
    other.environ_base["wsgi.url_scheme"] = "https"
    refused = other.get("/callback", query_string=params)
    assert refused.status_code == 400
    assert refused.get_json() == {"error": "invalid_state", "error_description":
                                  "this browser did not start this login (cookie missing or another)"}


def test_milagro_tls_endpoints_refuse_plain_https_and_bad_input(dta_unit):
    browser = dta_unit.as_party(None)                # an X.509 peer: no locator
    for path in ("/login/start", "/login/poll", "/shares/client", "/shares/server"):
        refused = browser.post(path, json={})
        assert refused.status_code == 401
        assert refused.get_json() == {"error": "milagro_tls_required", "error_description":
                                      "this endpoint answers only an anchored party over milagro-tls (a Bitcoin suite)"}
    party = dta_unit.as_party(dta_unit.alice)
    assert party.post("/login/start", data="not json").get_json() == {
        "error": "invalid_request", "error_description": "the body is a JSON object"}
    unknown = party.post("/login/start", json={"idp": "https://other.test", "method": "code"})
    assert unknown.status_code == 400 and unknown.get_json()["error"] == "unknown_idp"
    bad_method = party.post("/login/start", json={"idp": ISSUER, "method": "password"})
    assert bad_method.status_code == 400 and bad_method.get_json() == {
        "error": "invalid_request", "error_description": 'method is "code" or "device"'}
    missing = dta_unit.browser.get("/nowhere")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"

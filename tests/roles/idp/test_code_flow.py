"""The code flow with PKCE through the Flask test client, positive and negative."""
from __future__ import annotations

import re

from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import ISSUER
from .flows import REDIRECT_URI, authorize, authorize_params, exchange, location, pkce_pair, query_of


def verified_id_token(browser, id_token: str) -> dict:
    keys = KeySet.import_key_set(browser.get("/jwks").get_json())
    return jwt.decode(id_token, keys, algorithms=["RS256", "ES256"]).claims


def test_code_flow_issues_a_signed_id_token_and_userinfo(browser, confidential_client):
    client, secret = confidential_client
    verifier, challenge = pkce_pair()
    params = authorize_params(client.client_id, challenge)
    response = authorize(browser, params)
    assert response.status_code == 302 and location(response).startswith(REDIRECT_URI + "?")
    answer = query_of(location(response))
    assert answer["state"] == params["state"]
    token = exchange(browser, answer["code"], verifier, client.client_id, secret)
    assert token.status_code == 200, token.get_data(as_text=True)
    body = token.get_json()
    claims = verified_id_token(browser, body["id_token"])
    assert claims["iss"] == ISSUER and claims["aud"] == [client.client_id]
    assert claims["nonce"] == params["nonce"] and claims["preferred_username"] == "alice"
    assert isinstance(claims["auth_time"], int)
    # 128 random bits in hex: no sub starts with "-", which command lines would take for an option.
    assert re.fullmatch(r"[0-9a-f]{32}", claims["sub"]), claims["sub"]
    info = browser.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.get_json() == {"sub": claims["sub"], "name": "alice",
                                                             "preferred_username": "alice"}


def code_for(browser, client_id, **extra):
    verifier, challenge = pkce_pair()
    response = authorize(browser, authorize_params(client_id, challenge, **extra))
    assert response.status_code == 302, response.get_data(as_text=True)
    return query_of(location(response))["code"], verifier


def test_a_wrong_pkce_verifier_is_invalid_grant(browser, confidential_client):
    client, secret = confidential_client
    code, _ = code_for(browser, client.client_id)
    other_verifier, _ = pkce_pair()
    response = exchange(browser, code, other_verifier, client.client_id, secret)
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_grant", "error_description": "Code challenge failed."}


def test_plain_pkce_is_refused_back_to_the_client_naming_s256(browser, public_client):
    _, challenge = pkce_pair()
    params = authorize_params(public_client.client_id, challenge, code_challenge_method="plain")
    response = authorize(browser, params)
    assert response.status_code == 302
    answer = query_of(location(response))
    assert "code" not in answer and answer["error"] == "invalid_request" and answer["state"] == params["state"]
    assert answer["error_description"] == "code_challenge_method must be 'S256'; 'plain' is not accepted"


def test_pkce_is_required_even_of_confidential_clients(browser, confidential_client):
    client, _ = confidential_client
    params = authorize_params(client.client_id, None, code_challenge_method=None)
    answer = query_of(location(authorize(browser, params)))
    assert answer["error"] == "invalid_request" and "PKCE is required" in answer["error_description"]


def test_a_reused_code_fails_and_revokes_the_tokens_it_issued(browser, confidential_client):
    client, secret = confidential_client
    code, verifier = code_for(browser, client.client_id)
    first = exchange(browser, code, verifier, client.client_id, secret)
    assert first.status_code == 200
    access = first.get_json()["access_token"]
    assert browser.get("/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    second = exchange(browser, code, verifier, client.client_id, secret)
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    revoked = browser.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert revoked.status_code == 401 and revoked.get_json()["error"] == "invalid_token"
    refreshed = browser.post("/token", data={"grant_type": "refresh_token",
                                             "refresh_token": first.get_json()["refresh_token"]},
                             auth=(client.client_id, secret))
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"


def test_a_code_reused_while_its_first_redemption_is_in_flight_still_revokes_its_tokens(
        browser, confidential_client, monkeypatch):
    """The race of two workers: the second redemption arrives after the first claimed the code
    and before it saved its tokens. The first still gets its answer, but its tokens are dead."""
    from milagro_tls.roles.idp import server

    client, secret = confidential_client
    code, verifier = code_for(browser, client.client_id)
    real_get_user, seconds = server.get_user, []

    def get_user_then_race(store, sub):
        # The code grant calls this between its claim and save_token.
        if not seconds:
            seconds.append(exchange(browser, code, verifier, client.client_id, secret))
        return real_get_user(store, sub)

    monkeypatch.setattr(server, "get_user", get_user_then_race)
    first = exchange(browser, code, verifier, client.client_id, secret)
    monkeypatch.setattr(server, "get_user", real_get_user)
    assert seconds[0].status_code == 400 and seconds[0].get_json()["error"] == "invalid_grant"
    assert first.status_code == 200
    access = first.get_json()["access_token"]
    revoked = browser.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert revoked.status_code == 401 and revoked.get_json()["error"] == "invalid_token"


def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(browser, public_client):
    _, challenge = pkce_pair()
    params = authorize_params(public_client.client_id, challenge, redirect_uri="https://evil.example/cb")
    response = authorize(browser, params)
    assert response.status_code == 400 and "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert 'id="error"' in html and "https://evil.example/cb is not supported by client" in html


def test_a_wrong_client_secret_is_401_invalid_client(browser, confidential_client):
    client, secret = confidential_client
    code, verifier = code_for(browser, client.client_id)
    response = exchange(browser, code, verifier, client.client_id, secret + "x")
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_tampered_id_token_fails_its_signature_against_the_jwks(browser, confidential_client):
    import base64
    import json

    import pytest
    from joserfc.errors import BadSignatureError

    client, secret = confidential_client
    code, verifier = code_for(browser, client.client_id)
    id_token = exchange(browser, code, verifier, client.client_id, secret).get_json()["id_token"]
    header, payload, signature = id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        verified_id_token(browser, ".".join((header, forged, signature)))


def test_prompt_none_without_a_session_is_login_required_at_the_redirect_uri(browser, public_client):
    _, challenge = pkce_pair()
    params = authorize_params(public_client.client_id, challenge, prompt="none")
    response = browser.get("/authorize", query_string=params)
    assert response.status_code == 302 and location(response).startswith(REDIRECT_URI + "?")
    assert query_of(location(response)) == {"error": "login_required", "state": params["state"], "iss": ISSUER}


def test_prompt_none_without_consent_is_consent_required(browser, public_client):
    from .flows import login
    assert login(browser).status_code == 302
    _, challenge = pkce_pair()
    params = authorize_params(public_client.client_id, challenge, prompt="none")
    response = browser.get("/authorize", query_string=params)
    assert query_of(location(response)) == {"error": "consent_required", "state": params["state"], "iss": ISSUER}


def test_prompt_none_with_session_and_consent_issues_a_code(browser, public_client):
    code_for(browser, public_client.client_id)             # logs in and consents
    _, challenge = pkce_pair()
    response = browser.get("/authorize", query_string=authorize_params(public_client.client_id, challenge,
                                                                       prompt="none"))
    assert response.status_code == 302 and "code" in query_of(location(response))


def test_max_age_forces_a_new_login_and_auth_time_follows_it(browser, confidential_client):
    client, secret = confidential_client
    code_for(browser, client.client_id)
    with browser.session_transaction() as session:
        session["auth_time"] -= 600                       # the login was ten minutes ago
        old_auth_time = session["auth_time"]
    _, challenge = pkce_pair()
    response = browser.get("/authorize", query_string=authorize_params(client.client_id, challenge, max_age="60"))
    assert response.status_code == 302 and location(response).startswith("/login?next=")
    # With prompt=none the same request cannot show a login page: login_required.
    none = browser.get("/authorize", query_string=authorize_params(client.client_id, challenge, max_age="60",
                                                                   prompt="none"))
    assert query_of(location(none))["error"] == "login_required"
    code, verifier = code_for(browser, client.client_id, max_age="60")
    claims = verified_id_token(browser, exchange(browser, code, verifier, client.client_id,
                                                 secret).get_json()["id_token"])
    assert claims["auth_time"] >= old_auth_time + 600


def test_prompt_login_shows_the_login_page_despite_a_session(browser, public_client):
    code_for(browser, public_client.client_id)
    _, challenge = pkce_pair()
    response = browser.get("/authorize", query_string=authorize_params(public_client.client_id, challenge,
                                                                       prompt="login"))
    assert response.status_code == 302 and location(response).startswith("/login?next=")
    # ... and the login it asked for satisfies it (no loop).
    code, _ = code_for(browser, public_client.client_id, prompt="login")
    assert code


def test_a_denied_consent_is_access_denied(browser, public_client):
    _, challenge = pkce_pair()
    params = authorize_params(public_client.client_id, challenge)
    answer = query_of(location(authorize(browser, params, approve=False)))
    assert answer["error"] == "access_denied" and answer["state"] == params["state"] and answer["iss"] == ISSUER


def test_every_authorization_response_names_the_issuer_rfc_9207(browser, public_client):
    _, challenge = pkce_pair()
    params = authorize_params(public_client.client_id, challenge)
    answer = query_of(location(authorize(browser, params)))
    assert set(answer) == {"code", "state", "iss"} and answer["iss"] == ISSUER
    assert browser.get("/.well-known/openid-configuration").get_json()[
        "authorization_response_iss_parameter_supported"] is True


def test_a_bad_password_shows_the_login_page_again_with_401(browser):
    from .flows import login
    response = login(browser, password="wrong")
    assert response.status_code == 401 and 'id="error"' in response.get_data(as_text=True)
    assert browser.get("/milagro/receipts").status_code == 401


def test_userinfo_by_post_body_and_its_failures(browser, public_client):
    code, verifier = code_for(browser, public_client.client_id)
    access = exchange(browser, code, verifier, public_client.client_id, None).get_json()["access_token"]
    posted = browser.post("/userinfo", data={"access_token": access})
    assert posted.status_code == 200 and posted.get_json()["preferred_username"] == "alice"
    both = browser.post("/userinfo", data={"access_token": access}, headers={"Authorization": f"Bearer {access}"})
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_request"
    missing = browser.get("/userinfo")
    assert missing.status_code == 401 and missing.get_json()["error"] == "invalid_token"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = browser.post("/userinfo", data={"access_token": access + "x"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_token"


def test_a_refresh_token_is_used_once(browser, confidential_client):
    client, secret = confidential_client
    code, verifier = code_for(browser, client.client_id)
    first = exchange(browser, code, verifier, client.client_id, secret).get_json()
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    renewed = browser.post("/token", data=data, auth=(client.client_id, secret))
    assert renewed.status_code == 200 and renewed.get_json()["access_token"] != first["access_token"]
    again = browser.post("/token", data=data, auth=(client.client_id, secret))
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_each_login_appends_a_private_receipt_to_the_activity_log(tmp_path):
    from milagro_tls.roles.activitylog import ActivityLog, receipt_leaf
    from milagro_tls.roles.idp.app import create_app
    from milagro_tls.roles.idp.users import add_user

    from .conftest import make_config
    from .flows import login

    config = make_config(tmp_path)
    log = ActivityLog(config.store, 60, None)
    config.record_authentication = lambda sub: log.append_receipt(sub).to_json(ISSUER)
    alice = add_user(config.store, "alice", "correct horse")
    browser = create_app(config).test_client()
    browser.environ_base["wsgi.url_scheme"] = "https"
    login(browser)
    login(browser)
    receipts = browser.get("/milagro/receipts").get_json()
    assert len(receipts) == 2 and receipts[0]["salt"] != receipts[1]["salt"]
    for receipt in receipts:
        leaf = bytes.fromhex(receipt["leaf"])
        assert receipt_leaf(bytes.fromhex(receipt["salt"]), alice.sub, receipt["period"]) == leaf
        assert receipt["issuer"] == ISSUER
    with config.store.read() as connection:
        logged = {row[0] for row in connection.exec_driver_sql("SELECT leaf FROM activity_leaves")}
    assert {bytes.fromhex(r["leaf"]) for r in receipts} <= logged
    config.store.close()

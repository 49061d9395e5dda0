"""The code flow with PKCE through the Flask test client, positive and negative."""
from __future__ import annotations

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
    info = browser.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.get_json() == {"sub": claims["sub"], "name": "alice",
                                                             "preferred_username": "alice"}

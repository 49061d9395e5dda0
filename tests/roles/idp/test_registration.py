"""Dynamic client registration (RFC 7591): open, with an initial access token, and refused."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from milagro_tls.roles.idp import tables
from milagro_tls.roles.idp.app import create_app

from .conftest import make_config
from .flows import REDIRECT_URI, authorize, authorize_params, exchange, location, pkce_pair, query_of

METADATA = {"client_name": "Registered App", "redirect_uris": [REDIRECT_URI]}


def test_open_registration_returns_a_secret_stored_only_as_its_hash(browser, idp_config):
    response = browser.post("/register", json=METADATA)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["redirect_uris"] == [REDIRECT_URI] and body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["id_token_signed_response_alg"] == "RS256" and len(body["client_secret"]) >= 43
    with idp_config.store.read() as connection:
        row = connection.execute(select(tables.clients).where(tables.clients.c.client_id == body["client_id"])).one()
    assert row.secret_sha256 == hashlib.sha256(body["client_secret"].encode()).hexdigest()
    assert body["client_secret"] not in row.client_metadata


def test_a_public_client_gets_no_secret(browser):
    body = browser.post("/register", json={**METADATA, "token_endpoint_auth_method": "none"}).get_json()
    assert "client_secret" not in body and body["token_endpoint_auth_method"] == "none"


@pytest.fixture
def protected(tmp_path):
    config = make_config(tmp_path, registration_token="initial-access-token")
    client = create_app(config).test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    yield client
    config.store.close()


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic aW5pdGlhbC1hY2Nlc3MtdG9rZW4=",
                                    "Bearer initial-access-tokenX"])
def test_a_bad_registration_token_is_401_with_a_json_error(protected, header):
    response = protected.post("/register", json=METADATA, headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_token",
                                   "error_description": "a valid initial access token is required to register"}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_the_initial_access_token_registers(protected):
    response = protected.post("/register", json=METADATA, headers={"Authorization": "Bearer initial-access-token"})
    assert response.status_code == 201 and response.get_json()["client_id"]


def test_registration_asking_for_unsigned_id_tokens_is_refused(browser):
    response = browser.post("/register", json={**METADATA, "id_token_signed_response_alg": "none"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_client_metadata", "error_description":
                                   "id_token_signed_response_alg 'none' is not accepted: ID tokens are always signed"}


def test_registration_refuses_an_unknown_grant_and_a_code_client_without_redirect_uris(browser):
    unknown = browser.post("/register", json={**METADATA, "grant_types": ["password"]})
    assert unknown.status_code == 400 and unknown.get_json()["error"] == "invalid_client_metadata"
    no_uris = browser.post("/register", json={"client_name": "x"})
    assert no_uris.status_code == 400 and no_uris.get_json()["error_description"] == \
        "redirect_uris is required for the authorization_code grant"


def test_a_client_registered_for_es256_gets_es256_id_tokens(browser):
    from joserfc import jwt
    from joserfc.jwk import KeySet

    body = browser.post("/register", json={**METADATA, "id_token_signed_response_alg": "ES256"}).get_json()
    verifier, challenge = pkce_pair()
    code = query_of(location(authorize(browser, authorize_params(body["client_id"], challenge))))["code"]
    id_token = exchange(browser, code, verifier, body["client_id"], body["client_secret"]).get_json()["id_token"]
    keys = KeySet.import_key_set(browser.get("/jwks").get_json())
    token = jwt.decode(id_token, keys, algorithms=["ES256"])
    assert token.header["alg"] == "ES256" and token.claims["aud"] == [body["client_id"]]

"""Discovery (with the milagro fields), WebFinger (RFC 7033), the JWKS and key rotation."""
from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from milagro_tls.roles.idp.app import create_app
from milagro_tls.roles.idp.keys import CLOCK_SKEW

from .conftest import ISSUER, make_config
from .flows import authorize, authorize_params, exchange, location, pkce_pair, query_of

MILAGRO = {"milagro_birth_certificate_uri": f"{ISSUER}/.well-known/milagro/birth-certificate",
           "milagro_birth_certificate_sha256": "ab" * 32, "milagro_pubkey": "02" + "cd" * 32,
           "milagro_locator": {"network": "regtest"}}


def test_discovery_names_every_endpoint_s256_only_and_no_none(browser):
    doc = browser.get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == ISSUER
    for name, path in (("authorization_endpoint", "/authorize"), ("token_endpoint", "/token"),
                       ("userinfo_endpoint", "/userinfo"), ("jwks_uri", "/jwks"),
                       ("registration_endpoint", "/register"),
                       ("device_authorization_endpoint", "/device_authorization")):
        assert doc[name] == ISSUER + path
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert "urn:ietf:params:oauth:grant-type:device_code" in doc["grant_types_supported"]


def test_discovery_carries_the_milagro_metadata(tmp_path):
    config = make_config(tmp_path, milagro=MILAGRO)
    doc = create_app(config).test_client().get("/.well-known/openid-configuration").get_json()
    assert {k: doc[k] for k in MILAGRO} == MILAGRO
    config.store.close()


def test_webfinger_points_a_known_account_at_the_issuer(browser):
    rel = "http://openid.net/specs/connect/1.0/issuer"
    response = browser.get("/.well-known/webfinger", query_string={"resource": "acct:alice@localhost", "rel": rel})
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/jrd+json"
    assert response.get_json() == {"subject": "acct:alice@localhost", "links": [{"rel": rel, "href": ISSUER}]}


@pytest.mark.parametrize("query, status", [({}, 400), ({"resource": "acct:bob@localhost"}, 404),
                                           ({"resource": "acct:alice@elsewhere.example"}, 404)])
def test_webfinger_refusals_are_json(browser, query, status):
    response = browser.get("/.well-known/webfinger", query_string=query)
    assert response.status_code == status and response.get_json()["error"] in ("invalid_request", "not_found")


def id_token_for(browser, client, secret):
    verifier, challenge = pkce_pair()
    code = query_of(location(authorize(browser, authorize_params(client.client_id, challenge))))["code"]
    return exchange(browser, code, verifier, client.client_id, secret).get_json()["id_token"]


def test_rotation_keeps_the_old_key_served_while_its_tokens_live(browser, idp_config, confidential_client):
    client, secret = confidential_client
    before = id_token_for(browser, client, secret)
    old_kid = jwt.decode(before, KeySet.import_key_set(browser.get("/jwks").get_json())).header["kid"]
    new_kids = idp_config.keys.rotate()
    served = browser.get("/jwks").get_json()
    assert {old_kid, *new_kids} <= {key["kid"] for key in served["keys"]}
    assert all("d" not in key and "p" not in key for key in served["keys"])         # public parts only
    jwt.decode(before, KeySet.import_key_set(served))                                 # still verifies
    after = id_token_for(browser, client, secret)
    assert jwt.decode(after, KeySet.import_key_set(served)).header["kid"] in new_kids
    # Once every token the old key signed has expired, it is no longer served.
    later = time.time() + idp_config.token_lifetime + CLOCK_SKEW + 1
    assert old_kid not in {key["kid"] for key in idp_config.keys.public_jwks(now=later)["keys"]}

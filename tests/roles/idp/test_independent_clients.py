"""Independent OpenID Connect clients against the IdP over ordinary HTTPS (the Context's X.509
fallback, the IdP's self-signed certificate as the clients' only extra CA):

- panva's ``openid-client`` 6 run by node (interop/oidc/client.mjs): WebFinger, discovery,
  dynamic registration, the code flow with PKCE S256, its ID-token validation (signature
  against the JWKS included: ``enableNonRepudiationChecks``), userinfo; and its device grant;
- a Python relying party that is not Authlib (requests-oauthlib + our own ID-token checks,
  interop/oidc/rp.py): the same steps, plus userinfo by POST body;
- the person's part (log in, consent, device code) over HTTP through the IdP's HTML contract
  (interop/oidc/person.py).

Nothing here reaches beyond loopback: ``npm ci`` (session fixture) installs openid-client from
the npm registry at test-setup time when node_modules is missing.
"""
from __future__ import annotations

import json
import ssl
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from interop.oidc import node
from interop.oidc.device import DeviceClient
from interop.oidc.idtoken import IdTokenError, b64url_decode, b64url_encode, verify_id_token
from interop.oidc.node import NodeRun
from interop.oidc.person import Person
from interop.oidc.rp import RelyingParty

pytestmark = pytest.mark.slow

USER, PASSWORD = "alice", "correct horse"
#: Loopback redirect (RFC 8252 7.3). Never fetched: the person stops at the redirect to it.
REDIRECT_URI = "http://127.0.0.1:9/callback"
MILAGRO_FIELDS = ("milagro_birth_certificate_uri", "milagro_birth_certificate_sha256",
                  "milagro_pubkey", "milagro_locator")


@pytest.fixture(scope="session")
def openid_client():
    """panva's openid-client installed in interop/oidc (``npm ci`` from the lock file)."""
    node.ensure_installed()
    return node.NODE_DIR


def account(idp) -> str:
    """The user's identifier a relying party starts from: alice@localhost:PORT."""
    return f"{USER}@{urlsplit(idp.issuer).netloc}"


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def discovery(idp_server) -> dict:
    response = httpx.get(idp_server.issuer + "/.well-known/openid-configuration",
                         verify=ssl.create_default_context(cafile=idp_server.ca_file))
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def person(idp_server):
    person = Person(USER, PASSWORD, str(idp_server.ca_file))
    yield person
    person.close()


def node_config(idp, **extra) -> dict:
    return {"account": account(idp), "registration_token": idp.registration_token, **extra}


def test_openid_client_code_flow_with_pkce(idp_server, openid_client, discovery, person):
    idp = idp_server
    config = node_config(idp, redirect_uri=REDIRECT_URI, auth_method="client_secret_basic",
                         scope="openid profile")
    with NodeRun("code-flow", config, idp.ca_file) as client:
        webfinger = client.expect("webfinger")
        assert webfinger["issuer"] == idp.issuer
        assert webfinger["subject"] == f"acct:{account(idp)}"
        assert webfinger["content_type"].startswith("application/jrd+json")

        registered = client.expect("registered")
        assert registered["issuer"] == idp.issuer                    # openid-client checked it too
        assert registered["has_secret"] and registered["token_endpoint_auth_method"] == "client_secret_basic"
        assert registered["milagro"] == {name: discovery[name] for name in MILAGRO_FIELDS}

        url = client.expect("authorize")["url"]
        request = query(url)
        assert url.startswith(discovery["authorization_endpoint"] + "?")
        assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
        assert request["client_id"] == registered["client_id"]

        callback = person.authorize(url, REDIRECT_URI)
        answer = query(callback)
        assert answer["state"] == request["state"] and answer["code"]

        client.send({"callback": callback})
        done = client.expect("done")

    claims = done["claims"]
    assert claims["iss"] == idp.issuer
    assert registered["client_id"] in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])
    assert claims["nonce"] == request["nonce"]
    assert done["token_type"].lower() == "bearer" and done["has_access_token"]
    assert done["userinfo"]["sub"] == claims["sub"]
    assert done["userinfo"]["preferred_username"] == USER


def test_openid_client_device_grant(idp_server, openid_client, person):
    idp = idp_server
    config = node_config(idp, auth_method="client_secret_post", scope="openid profile")
    with NodeRun("device", config, idp.ca_file) as client:
        client.expect("webfinger")
        registered = client.expect("registered")
        assert registered["token_endpoint_auth_method"] == "client_secret_post"
        device = client.expect("device")
        assert device["verification_uri"] == idp.issuer + "/device"
        assert query(device["verification_uri_complete"])["user_code"] == device["user_code"]

        # The person types the code shown on the device into the plain verification URI.
        page = person.approve_device(device["verification_uri"], user_code=device["user_code"])
        assert page.status_code == 200

        done = client.expect("done", timeout=90)              # openid-client polls at the interval
    claims = done["claims"]
    assert claims["iss"] == idp.issuer
    assert registered["client_id"] in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])
    assert done["userinfo"]["sub"] == claims["sub"]
    assert done["userinfo"]["preferred_username"] == USER


@pytest.fixture
def python_rp(idp_server):
    rp = RelyingParty(str(idp_server.ca_file))
    yield rp
    rp.close()


def python_code_flow(idp, rp: RelyingParty, person: Person):
    webfinger = rp.webfinger(account(idp))
    assert rp.issuer == idp.issuer
    assert webfinger["content_type"].startswith("application/jrd+json")
    assert webfinger["jrd"]["subject"] == f"acct:{account(idp)}"
    metadata = rp.discover()
    rp.register({"client_name": "requests-oauthlib interop", "redirect_uris": [REDIRECT_URI],
                 "token_endpoint_auth_method": "client_secret_basic"}, idp.registration_token)
    url = rp.authorization_url(REDIRECT_URI, scope="openid profile")
    assert query(url)["code_challenge_method"] == "S256"
    callback = person.authorize(url, REDIRECT_URI)
    return metadata, rp.exchange(callback)


def test_requests_oauthlib_code_flow_with_pkce(idp_server, python_rp, person):
    idp = idp_server
    metadata, tokens = python_code_flow(idp, python_rp, person)

    # The discovery document as the issue lists it.
    for endpoint, path in (("authorization_endpoint", "/authorize"), ("token_endpoint", "/token"),
                           ("userinfo_endpoint", "/userinfo"), ("jwks_uri", "/jwks"),
                           ("registration_endpoint", "/register"),
                           ("device_authorization_endpoint", "/device_authorization")):
        assert metadata[endpoint] == idp.issuer + path
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert "none" not in metadata["id_token_signing_alg_values_supported"]
    assert all(metadata.get(name) for name in MILAGRO_FIELDS)

    claims = tokens.claims                         # verified by interop.oidc.idtoken
    assert claims["iss"] == idp.issuer and "at_hash" in claims
    by_get = python_rp.userinfo(tokens.raw["access_token"], "GET")
    by_post = python_rp.userinfo(tokens.raw["access_token"], "POST")
    assert by_get == by_post
    assert by_get["sub"] == claims["sub"] and by_get["preferred_username"] == USER


def test_both_clients_see_one_public_subject(idp_server, openid_client, python_rp, person):
    """The same person through node's and Python's client: the same ``sub`` (a public,
    stable subject identifier), different clients."""
    idp = idp_server
    _, tokens = python_code_flow(idp, python_rp, person)
    config = node_config(idp, redirect_uri=REDIRECT_URI, auth_method="client_secret_post")
    with NodeRun("code-flow", config, idp.ca_file) as client:
        client.expect("webfinger")
        registered = client.expect("registered")
        callback = person.authorize(client.expect("authorize")["url"], REDIRECT_URI)
        client.send({"callback": callback})
        done = client.expect("done")
    assert registered["client_id"] != python_rp.client["client_id"]
    assert done["claims"]["sub"] == tokens.claims["sub"]


def test_own_id_token_checks_refuse_what_they_must(idp_server, python_rp, person):
    """The requests-oauthlib client's ID-token checks are not a formality: a real token from the
    IdP passes, and each alteration fails with the check that caught it."""
    idp = idp_server
    _, tokens = python_code_flow(idp, python_rp, person)
    token, jwks, client_id = tokens.raw["id_token"], python_rp.jwks(), python_rp.client["client_id"]
    nonce = tokens.claims["nonce"]
    good = dict(jwks=jwks, issuer=idp.issuer, client_id=client_id, nonce=nonce,
                access_token=tokens.raw["access_token"])
    assert verify_id_token(token, **good) == tokens.claims

    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    forged = b64url_encode(json.dumps({**claims, "sub": "mallory"}).encode())
    unsigned = b64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    cases = {
        "bad signature": (f"{header}.{forged}.{signature}", good),
        "alg 'none', registered RS256": (f"{unsigned}.{payload}.", good),
        "nonce mismatch": (token, {**good, "nonce": nonce + "x"}),
        f"aud {claims['aud']!r} does not contain 'someone-else'": (token, {**good, "client_id": "someone-else"}),
        f"iss {idp.issuer!r} is not 'https://evil.example'": (token, {**good, "issuer": "https://evil.example"}),
        "expired": (token, {**good, "now": claims["exp"] + 61}),
        "issued in the future": (token, {**good, "now": claims["iat"] - 61}),
        "at_hash mismatch": (token, {**good, "access_token": tokens.raw["access_token"] + "x"}),
    }
    for message, (candidate, kwargs) in cases.items():
        with pytest.raises(IdTokenError) as caught:
            verify_id_token(candidate, **kwargs)
        assert str(caught.value) == message


def test_plain_rfc8628_device_client(idp_server, python_rp, person):
    """A second device client, written from RFC 8628 on httpx: pending before the person
    approves, tokens after, and the ID token passes the independent checks."""
    idp = idp_server
    python_rp.webfinger(account(idp))
    metadata = python_rp.discover()
    client = python_rp.register({"client_name": "rfc8628 thing",
                                 "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
                                 "token_endpoint_auth_method": "client_secret_basic"},
                                idp.registration_token)
    thing = DeviceClient(metadata, client["client_id"], client["client_secret"], str(idp.ca_file))
    try:
        device = thing.start("openid profile")
        assert device["interval"] >= 1 and device["expires_in"] > 0
        status, body = thing.poll_once(device["device_code"])
        assert (status, body["error"]) == (400, "authorization_pending")
        person.approve_device(device["verification_uri_complete"])
        tokens = thing.poll(device, timeout=60)
    finally:
        thing.close()
    claims = verify_id_token(tokens["id_token"], jwks=python_rp.jwks(), issuer=idp.issuer,
                             client_id=client["client_id"], nonce=None, access_token=tokens["access_token"])
    assert python_rp.userinfo(tokens["access_token"])["sub"] == claims["sub"]
    assert [status for status, _ in thing.polls] == [400, 200]


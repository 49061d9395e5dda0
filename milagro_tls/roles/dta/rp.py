"""The D-TA as an OpenID Connect relying party: discovery, dynamic registration, the code flow
(PKCE S256, state, nonce, the RFC 9207 ``iss`` check), ID-token validation against the IdP's
JWKS (joserfc), and the device grant (RFC 8628) with its polling.

Plain functions over an ``httpx.Client`` the caller gives (a Context pinning the IdP, or ordinary
HTTPS with a CA file): the HTTP is httpx's, the OAuth/OIDC rules are here, so each rule is
testable with ``httpx.MockTransport``. Errors are ``OidcError`` with an OAuth-style ``error``
code and the HTTP status the D-TA answers with.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import ClaimError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from ...errors import MilagroError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Clock skew tolerated on exp/iat (seconds): OIDC Core leaves it to the client; one minute.
LEEWAY = 60
#: RFC 8628 section 3.5: slow_down adds 5 seconds to the interval.
SLOW_DOWN_STEP = 5
MAX_DOCUMENT = 256 * 1024


class OidcError(MilagroError):
    """A login step failed; ``error`` is the JSON error code, ``status`` the HTTP status the
    D-TA answers with (400: the response was wrong; 502: the IdP could not be used)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


def _json(response: httpx.Response, what: str) -> dict:
    if len(response.content) > MAX_DOCUMENT:
        raise OidcError("idp_error", f"{what}: the IdP's answer is too large", 502)
    try:
        doc = response.json()
    except ValueError:
        raise OidcError("idp_error", f"{what}: HTTP {response.status_code}, not JSON", 502) from None
    if not isinstance(doc, dict):
        raise OidcError("idp_error", f"{what}: not a JSON object", 502)
    return doc


def _request(http: httpx.Client, method: str, url: str, what: str, **kwargs) -> httpx.Response:
    try:
        return http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise OidcError("idp_unreachable", f"{what}: {type(exc).__name__}: {exc}", 502) from None


# --- discovery and registration -----------------------------------------------------------
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


def discover(http: httpx.Client, issuer: str) -> dict:
    """The issuer's discovery document; its ``issuer`` must be exactly ``issuer`` (OIDC
    Discovery 4.3: otherwise another server's endpoints could be injected)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    response = _request(http, "GET", url, "discovery")
    if response.status_code != 200:
        raise OidcError("idp_error", f"discovery at {url}: HTTP {response.status_code}", 502)
    doc = _json(response, "discovery")
    if doc.get("issuer") != issuer:
        raise OidcError("idp_error", f"discovery at {url} names the issuer {doc.get('issuer')!r}, not {issuer!r}", 502)
    missing = [name for name in REQUIRED_METADATA if not isinstance(doc.get(name), str)]
    if missing:
        raise OidcError("idp_error", f"discovery lacks {', '.join(missing)}", 502)
    if "S256" not in doc.get("code_challenge_methods_supported", ["S256"]):
        raise OidcError("idp_error", "the IdP does not support PKCE S256", 502)
    return doc


def register(http: httpx.Client, discovery: dict, *, redirect_uri: str, client_name: str,
             registration_token: str | None = None) -> dict:
    """RFC 7591 dynamic registration as a confidential client (client_secret_basic) for the
    code flow and, when the IdP offers it, the device grant. Returns the IdP's answer
    (``client_id``, ``client_secret``, ...)."""
    endpoint = discovery.get("registration_endpoint")
    if not isinstance(endpoint, str):
        raise OidcError("idp_error", "the IdP offers no dynamic registration", 502)
    offered = discovery.get("grant_types_supported", ["authorization_code"])
    grant_types = ["authorization_code"] + ([DEVICE_GRANT] if DEVICE_GRANT in offered else [])
    body = {"client_name": client_name, "redirect_uris": [redirect_uri], "grant_types": grant_types,
            "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": "RS256", "scope": "openid"}
    headers = {"Authorization": f"Bearer {registration_token}"} if registration_token else {}
    response = _request(http, "POST", endpoint, "registration", json=body, headers=headers)
    if response.status_code not in (200, 201):
        detail = response.text[:300]
        raise OidcError("idp_error", f"registration: HTTP {response.status_code}: {detail}", 502)
    answer = _json(response, "registration")
    if not isinstance(answer.get("client_id"), str) or not answer["client_id"]:
        raise OidcError("idp_error", "registration answer has no client_id", 502)
    return answer


@dataclass(frozen=True)
class Provider:
    """One IdP as this D-TA is registered with it."""
    issuer: str
    discovery: dict
    client_id: str
    client_secret: str | None
    redirect_uri: str
    id_token_alg: str = "RS256"

    def endpoint(self, name: str) -> str:
        value = self.discovery.get(name)
        if not isinstance(value, str):
            raise OidcError("unsupported", f"the IdP {self.issuer} has no {name}", 400)
        return value

    @property
    def advertises_iss(self) -> bool:
        return self.discovery.get("authorization_response_iss_parameter_supported") is True

    def auth(self) -> httpx.Auth | None:
        if self.client_secret is None:
            return None
        # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
        return httpx.BasicAuth(quote(self.client_id, safe=""), quote(self.client_secret, safe=""))

    def token_body(self, body: dict) -> dict:
        return body if self.client_secret is not None else {**body, "client_id": self.client_id}


# --- the code flow ------------------------------------------------------------------------
@dataclass(frozen=True)
class CodeRequest:
    """What one browser login needs: kept by the D-TA (state hashed), sent in the URL."""
    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def fresh(cls, state: str | None = None) -> "CodeRequest":
        return cls(state or secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48))

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(provider: Provider, request: CodeRequest) -> str:
    endpoint = provider.endpoint("authorization_endpoint")
    query = urlencode({"response_type": "code", "client_id": provider.client_id,
                       "redirect_uri": provider.redirect_uri, "scope": "openid", "state": request.state,
                       "nonce": request.nonce, "code_challenge": request.code_challenge,
                       "code_challenge_method": "S256"})
    return endpoint + ("&" if urlsplit(endpoint).query else "?") + query


def check_authorization_response(provider: Provider, params: dict[str, str]) -> str:
    """The code from an authorization response, after the RFC 9207 check: an ``iss`` other
    than this IdP's is refused always; a missing one when the IdP advertises that it sends it.
    The caller has matched ``state`` already (that is how it found ``provider``)."""
    iss = params.get("iss")
    if iss is not None and not hmac.compare_digest(iss.encode(), provider.issuer.encode()):
        raise OidcError("invalid_iss", f"the authorization response comes from {iss!r}, "
                                       f"not the login's IdP {provider.issuer!r} (RFC 9207)")
    if iss is None and provider.advertises_iss:
        raise OidcError("invalid_iss", f"{provider.issuer} sends iss in every authorization response "
                                       "and this one has none (RFC 9207)")
    if "error" in params:
        raise OidcError("access_denied" if params["error"] == "access_denied" else "idp_error",
                        f"the IdP answered {params['error']}: {params.get('error_description', '')}".strip())
    code = params.get("code")
    if not code:
        raise OidcError("invalid_request", "the authorization response has no code")
    return code


def exchange_code(http: httpx.Client, provider: Provider, code: str, code_verifier: str) -> dict:
    body = provider.token_body({"grant_type": "authorization_code", "code": code,
                                "redirect_uri": provider.redirect_uri, "code_verifier": code_verifier})
    response = _request(http, "POST", provider.endpoint("token_endpoint"), "token request",
                        data=body, auth=provider.auth())
    doc = _json(response, "token response")
    if response.status_code != 200:
        raise OidcError("token_error", f"the IdP refused the code: {doc.get('error')}: "
                                       f"{doc.get('error_description', '')}".strip())
    if not isinstance(doc.get("id_token"), str):
        raise OidcError("invalid_id_token", "the token response has no id_token")
    return doc


# --- ID tokens ----------------------------------------------------------------------------
CLAIM_ERRORS = {
    "aud": "the ID token is for another audience, not this D-TA's client_id",
    "iss": "the ID token was issued by another issuer than the login's IdP",
}

def fetch_jwks(http: httpx.Client, provider: Provider) -> KeySet:
    response = _request(http, "GET", provider.endpoint("jwks_uri"), "JWKS")
    if response.status_code != 200:
        raise OidcError("idp_error", f"JWKS: HTTP {response.status_code}", 502)
    try:
        return KeySet.import_key_set(_json(response, "JWKS"))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise OidcError("idp_error", f"JWKS: {exc}", 502) from None


def validate_id_token(id_token: str, provider: Provider, keys: KeySet, *, nonce: str | None,
                      now: float | None = None) -> dict[str, Any]:
    """OIDC Core 3.1.3.7: the signature (only the registered algorithm, never ``none``), iss,
    aud (and azp when there are several audiences), exp, iat, sub, and the nonce we sent (a
    device-grant token carries none)."""
    try:
        token = jwt.decode(id_token, keys, algorithms=[provider.id_token_alg])
    except (JoseError, ValueError) as exc:
        raise OidcError("invalid_id_token", f"the ID token's signature does not verify: {exc}") from None
    claims = token.claims
    registry = JWTClaimsRegistry(now=int(now if now is not None else time.time()), leeway=LEEWAY,
                                 iss={"essential": True, "value": provider.issuer},
                                 aud={"essential": True, "value": provider.client_id},
                                 sub={"essential": True}, exp={"essential": True}, iat={"essential": True})
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise OidcError("invalid_id_token", CLAIM_ERRORS.get(exc.claim, f"the ID token's {exc.claim} claim is "
                                                                        f"wrong: {exc.description}")) from None
    except JoseError as exc:
        raise OidcError("invalid_id_token", f"the ID token's claims are wrong: {exc.description}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise OidcError("invalid_id_token", "the ID token has several audiences and its azp is not this D-TA")
    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise OidcError("invalid_id_token", "the ID token's nonce is not the one this login sent")
    return claims


# --- the device grant ---------------------------------------------------------------------
def device_authorization(http: httpx.Client, provider: Provider) -> dict:
    """RFC 8628 3.1-3.2: device_code, user_code, verification_uri(_complete), expires_in, interval."""
    response = _request(http, "POST", provider.endpoint("device_authorization_endpoint"),
                        "device authorization", data=provider.token_body({"scope": "openid"}),
                        auth=provider.auth())
    doc = _json(response, "device authorization")
    if response.status_code != 200:
        raise OidcError("idp_error", f"device authorization refused: {doc.get('error')}", 502)
    for name in ("device_code", "user_code", "verification_uri"):
        if not isinstance(doc.get(name), str):
            raise OidcError("idp_error", f"device authorization answer lacks {name}", 502)
    return doc


@dataclass(frozen=True)
class DevicePoll:
    status: str                  # "pending" | "slow_down" | "done" | "denied" | "expired"
    tokens: dict | None = None
    error: str | None = None


def poll_device_token(http: httpx.Client, provider: Provider, device_code: str) -> DevicePoll:
    """One token request (RFC 8628 3.4-3.5)."""
    response = _request(http, "POST", provider.endpoint("token_endpoint"), "device token request",
                        data=provider.token_body({"grant_type": DEVICE_GRANT, "device_code": device_code}),
                        auth=provider.auth())
    doc = _json(response, "device token response")
    if response.status_code == 200:
        if not isinstance(doc.get("id_token"), str):
            raise OidcError("invalid_id_token", "the device token response has no id_token")
        return DevicePoll("done", tokens=doc)
    error = doc.get("error")
    if error == "authorization_pending":
        return DevicePoll("pending")
    if error == "slow_down":
        return DevicePoll("slow_down")
    if error == "access_denied":
        return DevicePoll("denied", error=error)
    if error == "expired_token":
        return DevicePoll("expired", error=error)
    raise OidcError("idp_error", f"device token request: {error}: {doc.get('error_description', '')}".strip(), 502)


def describe(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True)

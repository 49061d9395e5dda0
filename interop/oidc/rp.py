"""A Python relying party that is not Authlib: requests (+ requests-oauthlib for the OAuth 2.0
code flow with PKCE S256) and our own OpenID Connect parts: WebFinger (RFC 7033 / OIDC
Discovery 1.0 section 2), discovery with the issuer check, RFC 7591 registration, ID-token
validation (:mod:`.idtoken`) and userinfo.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests
from requests_oauthlib import OAuth2Session

from .idtoken import verify_id_token

ISSUER_REL = "http://openid.net/specs/connect/1.0/issuer"


class RelyingPartyError(AssertionError):
    """The provider answered something a relying party must refuse."""


@dataclass
class Tokens:
    raw: dict
    claims: dict


class RelyingParty:
    def __init__(self, ca_file: str, timeout: float = 30) -> None:
        self.http = requests.Session()
        self.http.verify = ca_file
        # Otherwise requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override the session's CA
        # and sends through any proxy the environment names.
        self.http.trust_env = False
        self.timeout = timeout
        self.issuer: str | None = None
        self.metadata: dict = {}
        self.client: dict = {}
        self._oauth: OAuth2Session | None = None
        self._state = self._nonce = None

    def close(self) -> None:
        self.http.close()

    def _json(self, response: requests.Response, status: int = 200) -> dict:
        if response.status_code != status:
            raise RelyingPartyError(f"{response.request.method} {response.url}: HTTP "
                                    f"{response.status_code} {response.text[:500]!r}")
        return response.json()

    def webfinger(self, account: str) -> dict:
        """``alice@host:port`` -> the JRD; sets :attr:`issuer` from its issuer link."""
        host = account.rsplit("@", 1)[1]
        response = self.http.get(f"https://{host}/.well-known/webfinger", timeout=self.timeout,
                                 params={"resource": f"acct:{account}", "rel": ISSUER_REL},
                                 allow_redirects=False)
        jrd = self._json(response)
        links = [link for link in jrd.get("links", []) if link.get("rel") == ISSUER_REL]
        if len(links) != 1:
            raise RelyingPartyError(f"webfinger: {len(links)} issuer links in {jrd}")
        self.issuer = links[0]["href"]
        return {"jrd": jrd, "content_type": response.headers.get("content-type", "")}

    def discover(self) -> dict:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        self.metadata = self._json(self.http.get(url, timeout=self.timeout, allow_redirects=False))
        # OIDC Discovery 4.3: the document's issuer must be exactly the one we looked up.
        if self.metadata.get("issuer") != self.issuer:
            raise RelyingPartyError(f"discovery issuer {self.metadata.get('issuer')!r} != {self.issuer!r}")
        return self.metadata

    def jwks(self) -> dict:
        return self._json(self.http.get(self.metadata["jwks_uri"], timeout=self.timeout))

    def register(self, metadata: dict, registration_token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {registration_token}"} if registration_token else {}
        body = {"id_token_signed_response_alg": "RS256", **metadata}
        response = self.http.post(self.metadata["registration_endpoint"], json=body, headers=headers,
                                  timeout=self.timeout)
        self.client = self._json(response, 201)
        return self.client

    def authorization_url(self, redirect_uri: str, scope: str = "openid profile", **extra) -> str:
        """A code-flow request with PKCE S256 (requests-oauthlib makes the verifier and challenge)."""
        self._oauth = OAuth2Session(self.client["client_id"], redirect_uri=redirect_uri,
                                    scope=scope.split(), pkce="S256")
        self._oauth.trust_env = False
        self._nonce = secrets.token_urlsafe(24)
        url, self._state = self._oauth.authorization_url(self.metadata["authorization_endpoint"],
                                                         nonce=self._nonce, **extra)
        return url

    def parse_callback(self, callback_url: str) -> str:
        """Check the redirect's state (and RFC 9207 ``iss`` when present); return the code.

        Done here rather than by oauthlib's parser, which refuses the http:// loopback redirect
        (RFC 8252 section 7.3) that native clients and this test's callback server use."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
        if "error" in query:
            raise RelyingPartyError(f"authorization error {query}")
        if not hmac.compare_digest(query.get("state", "").encode(), self._state.encode()):
            raise RelyingPartyError("state mismatch")
        if "iss" in query and query["iss"] != self.issuer:
            raise RelyingPartyError(f"callback iss {query['iss']!r} != {self.issuer!r}")
        return query["code"]

    def exchange(self, callback_url: str) -> Tokens:
        """Token request (code + PKCE verifier, client_secret_basic), then the ID-token checks."""
        code = self.parse_callback(callback_url)
        raw = self._oauth.fetch_token(
            self.metadata["token_endpoint"], code=code, client_secret=self.client["client_secret"],
            include_client_id=False, verify=self.http.verify, timeout=self.timeout)
        claims = verify_id_token(raw["id_token"], jwks=self.jwks(), issuer=self.issuer,
                                 client_id=self.client["client_id"], nonce=self._nonce,
                                 access_token=raw["access_token"])
        return Tokens(raw, claims)

    def userinfo(self, access_token: str, method: str = "GET") -> dict:
        """GET with the bearer header, or POST with the token in the form body (RFC 6750 2.2)."""
        url = self.metadata["userinfo_endpoint"]
        if method == "GET":
            response = self.http.get(url, headers={"Authorization": f"Bearer {access_token}"},
                                     timeout=self.timeout)
        else:
            response = self.http.post(url, data={"access_token": access_token}, timeout=self.timeout)
        return self._json(response)

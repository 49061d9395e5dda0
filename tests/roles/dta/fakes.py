"""A fake IdP behind ``httpx.MockTransport`` and a fake gunicorn socket, for the D-TA's fast tests.

The fake IdP signs real RS256 ID tokens (joserfc) and checks PKCE S256 and the client's Basic
credentials, so the D-TA's relying party is exercised for real; a test bends one answer at a
time (another audience, another nonce, a foreign signing key) through ``FakeIdP.id_token_claims``
or ``FakeIdP.signing_key``."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from milagro_tls.chain.network import Network
from milagro_tls.identity.locator import Locator, LocatorKind

ISSUER = "https://idp.test"
CLIENT_ID = "dta-client-1"
CLIENT_SECRET = "s3cret/with+odd=chars"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

_KEYS: dict[str, RSAKey] = {}


def rsa_key(name: str) -> RSAKey:
    """One 2048-bit key per name for the whole session (generating one takes a moment)."""
    if name not in _KEYS:
        _KEYS[name] = RSAKey.generate_key(2048, parameters={"kid": name, "alg": "RS256", "use": "sig"})
    return _KEYS[name]


def fake_locator(seed: int) -> Locator:
    digest = hashlib.sha256(bytes([seed])).digest()
    return Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=digest,
                   input_index=0, block_hash=hashlib.sha256(digest).digest())


class FakeSocket:
    """What the D-TA reads from environ["gunicorn.socket"] (a MilagroSocket's getpeercert)."""

    def __init__(self, locator: Locator | None) -> None:
        self.locator = locator

    def getpeercert(self):
        if self.locator is None:
            return {"subject": ((("commonName", "localhost"),),)}    # an X.509 peer: no locator
        return {"name": None, "authenticated": False, "locator": self.locator.to_json()}


class FakeIdP:
    def __init__(self, issuer: str = ISSUER, *, advertise_iss: bool = True, device: bool = True,
                 clock=time.time) -> None:
        self.issuer = issuer
        self.clock = clock
        self.advertise_iss = advertise_iss
        self.device = device
        self.signing_key = rsa_key("idp")
        self.published = KeySet([rsa_key("idp")])
        self.codes: dict[str, dict] = {}
        self.device_codes: dict[str, dict] = {}
        self.id_token_claims: dict = {}          # overrides merged into every ID token
        self.registered: list[dict] = []
        self.requests: list[httpx.Request] = []

    # --- what a test drives -----------------------------------------------------------------
    def authorize(self, url: str, sub: str = "alice-sub") -> dict:
        """The person logs in and approves: the authorization response's parameters."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["code_challenge_method"] == "S256" and query["client_id"] == CLIENT_ID
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"sub": sub, "nonce": query["nonce"], "challenge": query["code_challenge"],
                            "redirect_uri": query["redirect_uri"]}
        return {"code": code, "state": query["state"], "iss": self.issuer}

    def approve_device(self, user_code: str, sub: str = "thing-sub", status: str = "approved") -> None:
        for entry in self.device_codes.values():
            if entry["user_code"] == user_code:
                entry.update(status=status, sub=sub)
                return
        raise KeyError(user_code)

    def id_token(self, sub: str, nonce: str | None) -> str:
        now = int(self.clock())
        claims = {"iss": self.issuer, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 600}
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(self.id_token_claims)
        return jwt.encode({"alg": "RS256", "kid": self.signing_key.kid}, claims, self.signing_key)

    # --- the IdP's endpoints ----------------------------------------------------------------
    def discovery(self) -> dict:
        doc = {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
               "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
               "registration_endpoint": f"{self.issuer}/register",
               "grant_types_supported": ["authorization_code"] + ([DEVICE_GRANT] if self.device else []),
               "code_challenge_methods_supported": ["S256"]}
        if self.device:
            doc["device_authorization_endpoint"] = f"{self.issuer}/device_authorization"
        if self.advertise_iss:
            doc["authorization_response_iss_parameter_supported"] = True
        return doc

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport())

    def _client_ok(self, request: httpx.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        return unquote(user) == CLIENT_ID and unquote(password) == CLIENT_SECRET

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery())
        if path == "/jwks":
            return httpx.Response(200, json=self.published.as_dict())
        if path == "/register":
            body = json.loads(request.content)
            self.registered.append(body)
            return httpx.Response(201, json={**body, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if not self._client_ok(request):
            return httpx.Response(401, json={"error": "invalid_client"})
        if path == "/device_authorization":
            device_code = secrets.token_urlsafe(16)
            user_code = "ABCD-" + os.urandom(2).hex().upper()
            self.device_codes[device_code] = {"user_code": user_code, "status": "pending"}
            return httpx.Response(200, json={"device_code": device_code, "user_code": user_code,
                                             "verification_uri": f"{self.issuer}/device",
                                             "verification_uri_complete": f"{self.issuer}/device?user_code={user_code}",
                                             "expires_in": 600, "interval": 5})
        if path == "/token" and form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if grant is None or grant["challenge"] != challenge or grant["redirect_uri"] != form.get("redirect_uri"):
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer",
                                             "id_token": self.id_token(grant["sub"], grant["nonce"])})
        if path == "/token" and form.get("grant_type") == DEVICE_GRANT:
            entry = self.device_codes.get(form.get("device_code", ""))
            if entry is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            status = entry["status"]
            if status == "approved":
                del self.device_codes[form["device_code"]]
                return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer",
                                                 "id_token": self.id_token(entry["sub"], None)})
            error = {"pending": "authorization_pending", "slow_down": "slow_down", "denied": "access_denied",
                     "expired": "expired_token"}[status]
            return httpx.Response(400, json={"error": error})
        return httpx.Response(404, json={"error": "not_found"})

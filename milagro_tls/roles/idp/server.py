"""The OAuth 2.0 / OpenID Connect server: Authlib's AuthorizationServer for Flask with our
store behind it.

What Authlib leaves to us, and where it is done here:

* PKCE with S256 only, and required of every client (``S256CodeChallenge``): ``plain`` and a
  missing method are refused with ``invalid_request`` naming S256.
* A code is claimed atomically when redeemed; a second redemption fails and revokes every
  token the first one issued (RFC 6749 section 4.1.2).
* Device grant (RFC 8628): ``slow_down`` when polled faster than the interval, which then
  grows by 5 seconds (section 3.5); a redeemed device code is invalidated.
* ID tokens carry ``auth_time`` from the login that authorized them, and are signed with the
  client's registered algorithm (RS256 by default), the key's ``kid`` in the header.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, UnauthorizedClientError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant, DeviceCredentialDict
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode, OpenIDToken
from sqlalchemy import insert, select, update

from ..store import insert_or_ignore
from . import tables
from .clients import DEVICE_CODE_GRANT_TYPE, Client, get_client, sha256_hex
from .config import IdPConfig
from .users import User, get_user

#: Scopes we know; ``openid`` is required for an ID token.
SCOPES = ("openid", "profile", "offline_access")


def _now() -> int:
    return int(time.time())


# --- claims ------------------------------------------------------------------------------
def user_claims(user: User, scope: str) -> UserInfo:
    claims = UserInfo(sub=user.sub)
    if "profile" in scope.split():
        claims["preferred_username"] = user.username
        claims["name"] = user.username
    return claims


# --- authorization codes -----------------------------------------------------------------
@dataclass
class AuthorizationCode:
    """A stored code (authlib.oidc.core.AuthorizationCodeMixin)."""
    code_sha256: str
    client_id: str
    user_sub: str
    redirect_uri: str
    scope: str
    nonce: str | None
    auth_time: int
    code_challenge: str
    code_challenge_method: str

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class S256CodeChallenge(CodeChallenge):
    """RFC 7636 with S256 only and PKCE required (OAuth 2.0 Security BCP, RFC 9700 2.1.1):
    ``plain`` offers no protection once the authorization request leaks."""
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        method = data.get("code_challenge_method")
        if method != "S256":
            shown = f"'{method}'" if method else "a missing one (which means 'plain')"
            raise InvalidRequestError(f"code_challenge_method must be 'S256'; {shown} is not accepted")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


def make_grants(config: IdPConfig):
    store = config.store

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

        def save_authorization_code(self, code, request):
            user: User = request.user
            with store.begin() as connection:
                connection.execute(insert(tables.codes).values(
                    code_sha256=sha256_hex(code), client_id=request.client.client_id, user_sub=user.sub,
                    redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
                    scope=request.scope or "", nonce=request.payload.data.get("nonce"),
                    auth_time=user.auth_time or _now(),
                    code_challenge=request.payload.data["code_challenge"],
                    code_challenge_method=request.payload.data["code_challenge_method"],
                    expires_at=_now() + config.code_lifetime))

        def query_authorization_code(self, code, client):
            digest = sha256_hex(code)
            with store.begin() as connection:
                # The row lock orders this redemption against the other's save_token (see
                # tables.reused_codes); on SQLite BEGIN IMMEDIATE already serializes them.
                row = connection.execute(select(tables.codes).where(tables.codes.c.code_sha256 == digest)
                                         .with_for_update()).first()
                if row is None or row.client_id != client.client_id:
                    return None
                # Claimed here, atomically: of two redemptions only one gets the row.
                claimed = connection.execute(
                    update(tables.codes).where(tables.codes.c.code_sha256 == digest,
                                               tables.codes.c.used_at.is_(None))
                    .values(used_at=_now())).rowcount == 1
                if not claimed:
                    # RFC 6749 4.1.2: a code used twice revokes what it issued the first time,
                    # including tokens its first redemption has not saved yet (save_token looks).
                    insert_or_ignore(connection, tables.reused_codes, {"code_sha256": digest, "seen_at": _now()})
                    connection.execute(update(tables.tokens).where(tables.tokens.c.code_sha256 == digest)
                                       .values(revoked=True))
                    return None
            if row.expires_at < _now():
                return None
            return AuthorizationCode(row.code_sha256, row.client_id, row.user_sub, row.redirect_uri, row.scope,
                                     row.nonce, row.auth_time, row.code_challenge, row.code_challenge_method)

        def delete_authorization_code(self, authorization_code):
            pass                        # kept, marked used: see query_authorization_code

        def authenticate_user(self, authorization_code):
            user = get_user(store, authorization_code.user_sub)
            return user and User(user.sub, user.username, authorization_code.auth_time)

    class IdTokens:
        """What both ID-token extensions share: our key ring, issuer and claims."""

        def resolve_client_private_key(self, client: Client):
            return config.keys.signing_key(client.id_token_signed_response_alg)

        def get_client_algorithm(self, client: Client):
            return client.id_token_signed_response_alg

        def get_encode_header(self, client: Client):
            key = self.resolve_client_private_key(client)
            return {"alg": client.id_token_signed_response_alg, "kid": key.kid, "typ": "JWT"}

        def get_client_claims(self, client: Client):
            return {"iss": config.issuer, "aud": [client.client_id], "exp": _now() + config.token_lifetime}

        def generate_user_info(self, user, scope):
            return user_claims(user, scope)

    class CodeIdTokens(IdTokens, OpenIDCode):
        def exists_nonce(self, nonce, request):
            with store.read() as connection:
                return connection.execute(select(tables.codes.c.code_sha256).where(
                    tables.codes.c.client_id == request.payload.client_id,
                    tables.codes.c.nonce == nonce)).first() is not None

    class DeviceIdTokens(IdTokens, OpenIDToken):
        def get_compatible_claims(self, request):
            claims = super().get_compatible_claims(request)
            if request.user.auth_time:
                claims["auth_time"] = request.user.auth_time
            return claims

    class RefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
        INCLUDE_NEW_REFRESH_TOKEN = True          # rotation: each refresh token is used once

        def authenticate_refresh_token(self, refresh_token):
            token = find_token(store, refresh_sha256=sha256_hex(refresh_token))
            if token and not token.revoked:
                return token
            return None

        def authenticate_user(self, refresh_token):
            return get_user(store, refresh_token.user_sub)

        def revoke_old_credential(self, refresh_token):
            with store.begin() as connection:
                connection.execute(update(tables.tokens).where(
                    tables.tokens.c.access_sha256 == refresh_token.access_sha256).values(revoked=True))

    class DeviceEndpoint(DeviceAuthorizationEndpoint):
        EXPIRES_IN = config.device_code_lifetime
        INTERVAL = config.device_interval

        def authenticate_client(self, request):
            client = super().authenticate_client(request)
            if not client.check_grant_type(DEVICE_CODE_GRANT_TYPE):
                raise UnauthorizedClientError("the client is not registered for the device_code grant")
            return client

        def get_verification_uri(self):
            return f"{config.issuer}/device"

        def save_device_credential(self, client_id, scope, data):
            with store.begin() as connection:
                connection.execute(insert(tables.device_codes).values(
                    device_sha256=sha256_hex(data["device_code"]), user_code=data["user_code"],
                    client_id=client_id, scope=scope or "", expires_at=_now() + data["expires_in"],
                    interval=data["interval"]))

    class DeviceGrant(DeviceCodeGrant):
        def query_device_credential(self, device_code):
            with store.read() as connection:
                row = connection.execute(select(tables.device_codes).where(
                    tables.device_codes.c.device_sha256 == sha256_hex(device_code))).first()
            if row is None:
                return None
            if row.redeemed_at is not None:
                raise InvalidGrantError("the device code has already been redeemed")
            return DeviceCredentialDict(client_id=row.client_id, scope=row.scope, user_code=row.user_code,
                                        expires_at=row.expires_at, device_sha256=row.device_sha256,
                                        interval=row.interval, last_poll_at=row.last_poll_at)

        def query_user_grant(self, user_code):
            with store.read() as connection:
                row = connection.execute(select(tables.device_codes).where(
                    tables.device_codes.c.user_code == user_code)).first()
            if row is None or row.approved is None:
                return None
            user = get_user(store, row.user_sub)
            return (user and User(user.sub, user.username, row.auth_time)), bool(row.approved)

        def should_slow_down(self, credential):
            # RFC 8628 3.5: polled sooner than the interval, answer slow_down and add 5 seconds
            # to the interval for this and every later request.
            now_ms = int(time.time() * 1000)
            last, interval = credential["last_poll_at"], credential["interval"]
            too_fast = last is not None and now_ms - last < interval * 1000
            with store.begin() as connection:
                connection.execute(update(tables.device_codes).where(
                    tables.device_codes.c.device_sha256 == credential["device_sha256"]).values(
                    last_poll_at=now_ms, interval=interval + 5 if too_fast else interval))
            return too_fast

        def create_token_response(self):
            digest = self.request.credential["device_sha256"]
            with store.begin() as connection:
                claimed = connection.execute(update(tables.device_codes).where(
                    tables.device_codes.c.device_sha256 == digest, tables.device_codes.c.redeemed_at.is_(None))
                    .values(redeemed_at=_now())).rowcount == 1
            if not claimed:
                raise InvalidGrantError("the device code has already been redeemed")
            return super().create_token_response()

    return CodeGrant, CodeIdTokens, DeviceIdTokens, RefreshGrant, DeviceEndpoint, DeviceGrant


# --- tokens ------------------------------------------------------------------------------
@dataclass
class Token:
    """A stored token (authlib TokenMixin)."""
    access_sha256: str
    client_id: str
    user_sub: str | None
    scope: str
    issued_at: int
    expires_in: int
    revoked: bool
    auth_time: int | None

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self, now: int | None = None):
        return (now or _now()) >= self.issued_at + self.expires_in

    def is_revoked(self):
        return self.revoked


def find_token(store, *, access_sha256: str | None = None, refresh_sha256: str | None = None) -> Token | None:
    column, value = ((tables.tokens.c.access_sha256, access_sha256) if access_sha256
                     else (tables.tokens.c.refresh_sha256, refresh_sha256))
    with store.read() as connection:
        row = connection.execute(select(tables.tokens).where(column == value)).first()
    if row is None:
        return None
    return Token(row.access_sha256, row.client_id, row.user_sub, row.scope, row.issued_at, row.expires_in,
                 bool(row.revoked), row.auth_time)


def build_server(app, config: IdPConfig) -> AuthorizationServer:
    store = config.store

    def save_token(token, request):
        code = getattr(request, "authorization_code", None)
        user = request.user
        with store.begin() as connection:
            reused = False
            if code is not None:
                connection.execute(select(tables.codes.c.code_sha256)
                                   .where(tables.codes.c.code_sha256 == code.code_sha256).with_for_update())
                reused = connection.execute(select(tables.reused_codes.c.code_sha256).where(
                    tables.reused_codes.c.code_sha256 == code.code_sha256)).first() is not None
            connection.execute(insert(tables.tokens).values(
                access_sha256=sha256_hex(token["access_token"]),
                refresh_sha256=sha256_hex(token["refresh_token"]) if token.get("refresh_token") else None,
                client_id=request.client.client_id, user_sub=user.sub if user else None,
                scope=token.get("scope", ""), issued_at=_now(), expires_in=int(token["expires_in"]),
                revoked=reused, code_sha256=code.code_sha256 if code else None,
                auth_time=user.auth_time if user else None))

    app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", True)
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {
        "authorization_code": config.token_lifetime, "refresh_token": config.token_lifetime,
        DEVICE_CODE_GRANT_TYPE: config.token_lifetime})
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(SCOPES))
    server = AuthorizationServer(app, query_client=lambda client_id: get_client(store, client_id),
                                 save_token=save_token)
    CodeGrant, CodeIdTokens, DeviceIdTokens, RefreshGrant, DeviceEndpoint, DeviceGrant = make_grants(config)
    server.register_grant(CodeGrant, [S256CodeChallenge(required=True), CodeIdTokens(require_nonce=False)])
    server.register_grant(RefreshGrant)
    server.register_grant(DeviceGrant, [DeviceIdTokens()])
    server.register_endpoint(DeviceEndpoint)

    class Issuer(IssuerParameter):
        # RFC 9207: every authorization response names its issuer, so a client of several
        # IdPs (a D-TA) can refuse a response that another IdP sent it (mix-up attacks).
        def get_issuer(self) -> str:
            return config.issuer

    server.register_extension(Issuer())
    return server



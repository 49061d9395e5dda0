"""OAuth clients: the registered metadata (RFC 7591 dynamic registration, open or protected by
an initial access token) and Authlib's client protocol over it.

A client secret is 32 random bytes shown once, in the registration response; the store keeps
its SHA256 and compares in constant time. (argon2 is for passwords, which people choose and
reuse; a random 256-bit secret needs no stretching, and the token endpoint checks it often.)
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, scope_to_list
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError
from authlib.oidc.registration import ClientMetadataClaims as OIDCClientMetadataClaims
from sqlalchemy import insert, select

from . import tables

DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
#: What a client may ask for at registration (the discovery document says the same).
GRANT_TYPES = ("authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Client:
    """A registered client as Authlib's ClientMixin wants it."""
    client_id: str
    secret_sha256: str | None
    issued_at: int
    metadata: dict = field(default_factory=dict)

    # --- Authlib's ClientMixin ---------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    @property
    def client_name(self) -> str:
        return self.metadata.get("client_name") or self.client_id

    @property
    def id_token_signed_response_alg(self) -> str:
        return self.metadata.get("id_token_signed_response_alg") or "RS256"

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.metadata.get("redirect_uris") or ())

    def get_default_redirect_uri(self) -> str | None:
        # Only an unambiguous default (RFC 6749 section 3.1.2.3).
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(scope_to_list(self.metadata.get("scope") or "openid profile"))
        return " ".join(s for s in scope_to_list(scope) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match (OAuth 2.0 Security BCP, RFC 9700 section 4.1.3).
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_sha256 is None:
            return False
        return hmac.compare_digest(sha256_hex(client_secret), self.secret_sha256)

    @property
    def token_endpoint_auth_method(self) -> str:
        return self.metadata.get("token_endpoint_auth_method") or "client_secret_basic"

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in (self.metadata.get("response_types") or ["code"])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in (self.metadata.get("grant_types") or ["authorization_code"])


def get_client(store, client_id: str | None) -> Client | None:
    if not client_id:
        return None
    with store.read() as connection:
        row = connection.execute(select(tables.clients).where(tables.clients.c.client_id == client_id)).first()
    if row is None:
        return None
    return Client(row.client_id, row.secret_sha256, row.issued_at, json.loads(row.client_metadata))


# --- registration (RFC 7591) -----------------------------------------------------------
class InvalidRegistrationToken(OAuth2Error):
    """A registration request without the initial access token, or with a wrong one
    (RFC 7591 section 3: the server refuses it; RFC 6750 section 3.1: 401 invalid_token)."""
    error = "invalid_token"
    status_code = 401

    def get_headers(self):
        return super().get_headers() + [("WWW-Authenticate", f'Bearer error="{self.error}"')]


#: The JSON type of every metadata field RFC 7591 section 2 and OIDC Registration section 2
#: define, checked before Authlib's claims (which raised TypeError or AttributeError, a 500, on
#: a number where a string belongs or a string where a list does, and kept a list as a name).
_STRING_FIELDS = frozenset((
    "client_name", "client_uri", "logo_uri", "scope", "tos_uri", "policy_uri", "jwks_uri", "software_id",
    "software_version", "software_statement", "token_endpoint_auth_method", "token_endpoint_auth_signing_alg",
    "id_token_signed_response_alg", "id_token_encrypted_response_alg", "id_token_encrypted_response_enc",
    "userinfo_signed_response_alg", "userinfo_encrypted_response_alg", "userinfo_encrypted_response_enc",
    "request_object_signing_alg", "request_object_encryption_alg", "request_object_encryption_enc",
    "subject_type", "sector_identifier_uri", "application_type", "initiate_login_uri"))
_STRING_LIST_FIELDS = frozenset(("redirect_uris", "grant_types", "response_types", "contacts", "request_uris",
                                 "default_acr_values", "post_logout_redirect_uris"))


def check_metadata_types(data: dict) -> None:
    """InvalidClientMetadataError naming the first field whose JSON type is wrong."""
    for key, value in data.items():
        name = key.partition("#")[0] if isinstance(key, str) else key     # client_name#ja-Jpan-JP
        if name in _STRING_FIELDS and not isinstance(value, str):
            raise InvalidClientMetadataError(f"{key} must be a string")
        if name in _STRING_LIST_FIELDS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InvalidClientMetadataError(f"{key} must be a list of strings")
        if name == "jwks" and not isinstance(value, dict):
            raise InvalidClientMetadataError("jwks must be a JSON Web Key Set object")
        if name == "default_max_age" and (type(value) is not int or value < 0):
            raise InvalidClientMetadataError("default_max_age must be a non-negative integer")
        if name == "require_auth_time" and not isinstance(value, bool):
            raise InvalidClientMetadataError("require_auth_time must be a boolean")


class RegistrationEndpoint(ClientRegistrationEndpoint):
    """Authlib's endpoint with our store, the initial access token, and `none` refused as the
    ID token algorithm (OIDC Registration 2 allows it only without ID tokens from the
    authorization endpoint; we never send unsigned ID tokens)."""

    def __init__(self, server, *, store, server_metadata, registration_token: str | None) -> None:
        super().__init__(server, claims_classes=[ClientMetadataClaims, OIDCClientMetadataClaims])
        self.store = store
        self.server_metadata = server_metadata
        self.registration_token = registration_token

    def get_server_metadata(self) -> dict:
        return self.server_metadata()

    def authenticate_token(self, request):
        if self.registration_token is None:
            return True                      # open registration
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented or not hmac.compare_digest(
                presented.strip().encode(), self.registration_token.encode()):
            raise InvalidRegistrationToken("a valid initial access token is required to register")
        return True

    def extract_client_metadata(self, request):
        data = request.payload.data
        if not isinstance(data, dict) or not data:
            # Authlib answers an empty body with a bare invalid_request, and a JSON array or
            # scalar raised AttributeError (a 500).
            raise InvalidRequestError("the registration request is a JSON object of client metadata (RFC 7591)")
        check_metadata_types(data)
        if data.get("id_token_signed_response_alg") == "none":
            raise InvalidClientMetadataError("id_token_signed_response_alg 'none' is not accepted: "
                                             "ID tokens are always signed")
        try:
            metadata = super().extract_client_metadata(request)
        except (TypeError, AttributeError, ValueError) as error:
            # What the type checks above do not reach (inside a jwks, say) is still the
            # client's malformed metadata, not a server error.
            raise InvalidClientMetadataError(f"malformed client metadata ({type(error).__name__})") from None
        grant_types = metadata.get("grant_types") or ["authorization_code"]
        if "authorization_code" in grant_types and not metadata.get("redirect_uris"):
            raise InvalidClientMetadataError("redirect_uris is required for the authorization_code grant")
        return metadata

    def generate_client_secret(self, request):
        return secrets.token_urlsafe(32)

    def generate_client_id(self, request):
        return secrets.token_urlsafe(18)

    def generate_client_info(self, request):
        info = super().generate_client_info(request)
        if (request.payload.data or {}).get("token_endpoint_auth_method") == "none":
            del info["client_secret"]          # a public client has no secret
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(self, client_info, client_metadata, request):
        metadata = _with_defaults(client_metadata)
        secret = client_info.get("client_secret")
        client = _insert(self.store, Client(client_info["client_id"], sha256_hex(secret) if secret else None,
                                            client_info["client_id_issued_at"], metadata))
        client_metadata.update(metadata)       # the response shows the defaults we applied
        return client


def _with_defaults(metadata: dict) -> dict:
    # RFC 7591 section 2's defaults, written down so that the stored metadata says what applies.
    metadata = dict(metadata)
    metadata.setdefault("token_endpoint_auth_method", "client_secret_basic")
    metadata.setdefault("grant_types", ["authorization_code"])
    metadata.setdefault("response_types", ["code"])
    metadata.setdefault("id_token_signed_response_alg", "RS256")
    return metadata


def _insert(store, client: Client) -> Client:
    with store.begin() as connection:
        connection.execute(insert(tables.clients).values(
            client_id=client.client_id, secret_sha256=client.secret_sha256, issued_at=client.issued_at,
            client_metadata=json.dumps(client.metadata, sort_keys=True)))
    return client


def register_client(store, metadata: dict, *, now: float | None = None) -> tuple[Client, str | None]:
    """Register a client directly (CLI and tests), with the same defaults as the endpoint;
    returns the client and its secret (None for a public client)."""
    metadata = _with_defaults(metadata)
    secret = None if metadata["token_endpoint_auth_method"] == "none" else secrets.token_urlsafe(32)
    client = Client(secrets.token_urlsafe(18), sha256_hex(secret) if secret else None,
                    int(now if now is not None else time.time()), metadata)
    return _insert(store, client), secret

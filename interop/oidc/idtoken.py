"""ID-token validation for the requests-oauthlib relying party (OpenID Connect Core 1.0, 3.1.3.7).

requests-oauthlib does OAuth 2.0 only, so the OpenID Connect part is ours: the JWS signature
against the issuer's JWKS (RS256, the algorithm the client registered: never ``none`` and never
an algorithm the token chooses for itself), then iss, aud/azp, exp, iat, nonce and at_hash. The
RSA verification is ``cryptography``'s; nothing here shares code with the IdP (Authlib/joserfc).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class IdTokenError(ValueError):
    """The ID token fails one check; the message names which."""


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa_key(jwk: dict) -> rsa.RSAPublicKey:
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def _select_key(jwks: dict, header: dict) -> dict:
    keys = [k for k in jwks.get("keys", []) if k.get("kty") == "RSA" and k.get("use", "sig") == "sig"]
    if "kid" in header:
        keys = [k for k in keys if k.get("kid") == header["kid"]]
    if len(keys) != 1:
        raise IdTokenError(f"no single RSA signing key in the JWKS for kid {header.get('kid')!r}")
    return keys[0]


def at_hash(access_token: str) -> str:
    """RS256's at_hash: the left half of SHA-256 of the token's ASCII, base64url."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


def verify_id_token(token: str, *, jwks: dict, issuer: str, client_id: str, nonce: str | None,
                    access_token: str | None = None, now: float | None = None,
                    leeway: int = 60) -> dict:
    """Return the claims of ``token`` after every check, or raise :class:`IdTokenError`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise IdTokenError("not a JWS compact serialization")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError as exc:
        raise IdTokenError(f"undecodable token: {exc}") from None
    if header.get("alg") != "RS256":  # what we registered; the token does not get to choose
        raise IdTokenError(f"alg {header.get('alg')!r}, registered RS256")
    key = _rsa_key(_select_key(jwks, header))
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise IdTokenError("bad signature") from None

    now = time.time() if now is None else now
    if claims.get("iss") != issuer:
        raise IdTokenError(f"iss {claims.get('iss')!r} is not {issuer!r}")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise IdTokenError(f"aud {audience!r} does not contain {client_id!r}")
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client_id:
        raise IdTokenError(f"azp {claims.get('azp')!r} is not {client_id!r}")
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), (int, float)):
            raise IdTokenError(f"no numeric {name}")
    if claims["exp"] <= now - leeway:
        raise IdTokenError("expired")
    if claims["iat"] > now + leeway:
        raise IdTokenError("issued in the future")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IdTokenError("no sub")
    if nonce is not None:
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise IdTokenError("nonce mismatch")
    if access_token is not None and "at_hash" in claims:
        if not hmac.compare_digest(claims["at_hash"].encode(), at_hash(access_token).encode()):
            raise IdTokenError("at_hash mismatch")
    return claims

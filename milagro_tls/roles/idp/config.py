"""What one IdP app is made of; app.create_app builds the Flask app from it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .keys import KeyRing

#: Lifetimes in seconds, each with its reason.
#: Access and ID tokens: one hour, the common default (Authlib's and most providers').
TOKEN_LIFETIME = 3600
#: Authorization codes: RFC 6749 section 4.1.2 recommends at most 10 minutes.
CODE_LIFETIME = 600
#: Device codes: 10 minutes for a person to walk to a browser (RFC 8628 section 3.2 leaves it
#: to the server; Authlib's default is 30).
DEVICE_CODE_LIFETIME = 600
#: Device polling interval: RFC 8628 section 3.2's default of 5 seconds.
DEVICE_INTERVAL = 5


@dataclass
class IdPConfig:
    issuer: str                               # https://localhost:PORT, no trailing slash
    store: Any                                # roles.store.Store, migrated (tables.migrate)
    keys: KeyRing
    secret_key: bytes                         # Flask session signing key (HOME secret)
    registration_token: str | None = None     # None: open dynamic registration
    #: the milagro fields of the discovery document (milagro_birth_certificate_uri, ...)
    milagro: dict | None = None
    #: called with (user_sub) after each successful login; returns the receipt dict
    #: {"period", "leaf", "salt", "issuer"} (activity.py), or None when there is no log
    record_authentication: Callable[[str], dict | None] | None = None
    #: extra Flask blueprints served on the same app (the roles' /.well-known/milagro/*)
    blueprints: tuple = ()
    token_lifetime: int = TOKEN_LIFETIME
    code_lifetime: int = CODE_LIFETIME
    device_code_lifetime: int = DEVICE_CODE_LIFETIME
    device_interval: int = DEVICE_INTERVAL

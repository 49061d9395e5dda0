"""The D-TA's tables (SQLAlchemy Core) and their migrations, applied through ``Store.migrate``.

What a copy of the database gives away, and why that is acceptable:

* login nonces (the bearer half of a login) and OAuth ``state`` values are stored as their
  SHA256 only: a copy gives nobody a nonce to present;
* the OIDC nonce, the PKCE verifier and the device code are kept as they are while the login
  runs (the D-TA must send them to the IdP); they expire with the login, and none of them gets
  a share without the party's locator key;
* the master secret and the IdP client secrets never enter the database (0600 key files).

Times are Unix seconds (integers).
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

COMPONENT = "dta"

metadata = MetaData()

#: The IdPs this D-TA is a relying party of: discovery and the dynamic registration's answer.
idps = Table(
    "dta_idps", metadata,
    Column("issuer", String(512), primary_key=True),
    Column("client_id", String(256), nullable=False),
    Column("secret_file", Text, nullable=True),            # HOME/idp-clients/*.key; None: public client
    Column("redirect_uri", Text, nullable=False),
    Column("discovery", Text, nullable=False),              # the discovery document, JSON
    Column("registration", Text, nullable=False),           # the registration response less the secret, JSON
    Column("registered_at", BigInteger, nullable=False),
)

logins = Table(
    "dta_logins", metadata,
    Column("nonce_sha256", String(64), primary_key=True),
    Column("anchor", String(64), nullable=False),            # locator_key(requesting party)
    Column("locator", Text, nullable=False),                 # its locator, JSON (the share's recipient)
    Column("issuer", String(512), nullable=False),
    Column("method", String(8), nullable=False),             # "code" | "device"
    Column("status", String(8), nullable=False),             # pending | done | denied | expired
    Column("reason", Text, nullable=True),                   # why denied
    Column("state_sha256", String(64), nullable=True, unique=True),   # code flow
    Column("oidc_nonce", String(128), nullable=True),
    Column("code_verifier", String(128), nullable=True),
    Column("device_code", Text, nullable=True),              # device flow
    Column("interval", Integer, nullable=True),
    Column("next_poll_at", BigInteger, nullable=True),
    Column("subject", String(512), nullable=True),           # the ID token's sub, once done
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),        # the login must finish by then
    Column("done_at", BigInteger, nullable=True),
    Column("used_at", BigInteger, nullable=True),            # shares issued (once per nonce)
)

#: Every share issued: which identity, which kind, and which locator received it.
issued = Table(
    "dta_issued", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("identity", Text, nullable=True),                 # hex(ID); None for server shares
    Column("date", Integer, nullable=True),
    Column("anchor", String(64), nullable=False),
    Column("recipient", Text, nullable=False),               # locator JSON
    Column("share_sha256", String(64), nullable=False),      # SignedShare.digest()
    Column("login_nonce_sha256", String(64), nullable=True),
    Column("period", BigInteger, nullable=True),             # activity-log period of its leaf
    Column("issued_at", BigInteger, nullable=False),
)

#: Relying services allowed to receive SS_i (``milagro dta service add``).
services = Table(
    "dta_services", metadata,
    Column("anchor", String(64), primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("locator", Text, nullable=False),
    Column("added_at", BigInteger, nullable=False),
)

#: Users who get no more shares (``milagro dta user revoke``).
revoked = Table(
    "dta_revoked", metadata,
    Column("issuer", String(512), primary_key=True),
    Column("sub", String(512), primary_key=True),
    Column("revoked_at", BigInteger, nullable=False),
)


def _v1(connection: Connection) -> None:
    metadata.create_all(connection, tables=[idps, logins, issued, services, revoked])


MIGRATIONS = [_v1]


def migrate(store) -> int:
    return store.migrate(COMPONENT, MIGRATIONS)

"""The IdP's tables (SQLAlchemy Core) and their migrations, applied through ``Store.migrate``.

Secrets the IdP hands out (client secrets, authorization codes, device codes, access and
refresh tokens) are stored as their SHA256 only: a copy of the database gives nobody a usable
credential. Passwords are argon2 hashes (users.py). Times are Unix seconds (integers), the unit
OAuth and OpenID Connect speak (``expires_in``, ``auth_time``, ``exp``).
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint)
from sqlalchemy.engine import Connection

#: The component name under which Store.migrate records this schema's version.
COMPONENT = "idp"

metadata = MetaData()

users = Table(
    "idp_users", metadata,
    Column("sub", String(64), primary_key=True),           # random, never reassigned (OIDC Core 8)
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

clients = Table(
    "idp_clients", metadata,
    Column("client_id", String(64), primary_key=True),
    Column("secret_sha256", String(64), nullable=True),    # None: a public client (auth method "none")
    Column("issued_at", BigInteger, nullable=False),
    Column("client_metadata", Text, nullable=False),       # the registered metadata, JSON
)

codes = Table(
    "idp_codes", metadata,
    Column("code_sha256", String(64), primary_key=True),
    Column("client_id", String(64), ForeignKey("idp_clients.client_id"), nullable=False),
    Column("user_sub", String(64), ForeignKey("idp_users.sub"), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("nonce", Text, nullable=True),
    Column("auth_time", BigInteger, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(16), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    # Kept after use (not deleted) so that a second redemption is recognised and the tokens
    # of the first are revoked (RFC 6749 section 4.1.2).
    Column("used_at", BigInteger, nullable=True),
)

tokens = Table(
    "idp_tokens", metadata,
    Column("access_sha256", String(64), primary_key=True),
    Column("refresh_sha256", String(64), nullable=True, unique=True),
    Column("client_id", String(64), ForeignKey("idp_clients.client_id"), nullable=False),
    Column("user_sub", String(64), ForeignKey("idp_users.sub"), nullable=True),
    Column("scope", Text, nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_in", Integer, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("code_sha256", String(64), nullable=True, index=True),   # the code that issued it
    Column("auth_time", BigInteger, nullable=True),
)

device_codes = Table(
    "idp_device_codes", metadata,
    Column("device_sha256", String(64), primary_key=True),
    Column("user_code", String(16), nullable=False, unique=True),
    Column("client_id", String(64), ForeignKey("idp_clients.client_id"), nullable=False),
    Column("scope", Text, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("interval", Integer, nullable=False),
    Column("last_poll_at", BigInteger, nullable=True),       # milliseconds: polls are compared to the interval
    Column("user_sub", String(64), ForeignKey("idp_users.sub"), nullable=True),
    Column("approved", Boolean, nullable=True),           # None: the person has not decided yet
    Column("auth_time", BigInteger, nullable=True),
    Column("redeemed_at", BigInteger, nullable=True),
)

consents = Table(
    "idp_consents", metadata,
    Column("user_sub", String(64), ForeignKey("idp_users.sub"), primary_key=True),
    Column("client_id", String(64), ForeignKey("idp_clients.client_id"), primary_key=True),
    Column("scope", Text, nullable=False),                # space-separated, what the person approved
    Column("granted_at", BigInteger, nullable=False),
)

receipts = Table(
    "idp_receipts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_sub", String(64), ForeignKey("idp_users.sub"), nullable=False, index=True),
    Column("period", Integer, nullable=False),
    Column("leaf", String(64), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("issuer", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("leaf"),
)


#: Tables added after version 1 live in their own MetaData: version 1 creates ``metadata`` as it
#: stands, so a table added to it would exist before the migration that adds it.
metadata_v2 = MetaData()

#: Codes presented a second time (RFC 6749 4.1.2). The second redemption and the first one's
#: save_token both lock the code's row, so whichever commits last sees the other: the tokens of
#: the first are revoked even when the two race on two workers.
reused_codes = Table(
    "idp_reused_codes", metadata_v2,
    Column("code_sha256", String(64), ForeignKey(codes.c.code_sha256), primary_key=True),
    Column("seen_at", BigInteger, nullable=False),
)


def _v1_create_tables(connection: Connection) -> None:
    # Version 1 is the tables above as first released; a later change is a new function
    # appended to MIGRATIONS, never an edit of this one.
    metadata.create_all(connection, checkfirst=False)


def _v2_reused_codes(connection: Connection) -> None:
    metadata_v2.create_all(connection, checkfirst=False)


MIGRATIONS = (_v1_create_tables, _v2_reused_codes)


def migrate(store) -> int:
    return store.migrate(COMPONENT, MIGRATIONS)

"""The admin UI's own tables (component "tbs_admin"): the people who administer the TBS, their
login sessions and their API tokens. Groups, enrolments and instruction sets are the TBS's (M1's tables), reached
only through backend.py.

Passwords are argon2id hashes (the IdP's hasher); API tokens are 256-bit random strings stored
as their SHA256 only, so a copy of the database gives nobody a usable credential.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

COMPONENT = "tbs_admin"

metadata = MetaData()

admins = Table(
    "tbs_admin_users", metadata,
    Column("id", String(64), primary_key=True),            # random, never reassigned
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

tokens = Table(
    "tbs_admin_tokens", metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("admin_id", String(64), ForeignKey("tbs_admin_users.id"), nullable=False, index=True),
    Column("label", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)


#: Tables added after version 1 live in their own MetaData (version 1 creates ``metadata``).
metadata_v2 = MetaData()

#: Login sessions, so that logging out (or deleting an admin) ends them on the server: the
#: signed cookie carries a random session id, stored here as its SHA256.
sessions = Table(
    "tbs_admin_sessions", metadata_v2,
    Column("id_sha256", String(64), primary_key=True),
    Column("admin_id", String(64), ForeignKey(admins.c.id), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)


def _v1_create_tables(connection: Connection) -> None:
    # Version 1 as first released; a change is a new function appended to MIGRATIONS.
    metadata.create_all(connection, checkfirst=False)


def _v2_sessions(connection: Connection) -> None:
    metadata_v2.create_all(connection, checkfirst=False)


MIGRATIONS = (_v1_create_tables, _v2_sessions)


def migrate(store) -> int:
    return store.migrate(COMPONENT, MIGRATIONS)

"""Admin users (argon2id, the IdP's hasher and its equal-time refusal) and bearer API tokens.

A failed login looks the same whether the name is unknown or the password wrong, and takes the
same time: an unknown name is checked against the IdP's dummy hash. A bearer token is looked up
by its SHA256 (the database never holds the token itself); the lookup by a hash of a 256-bit
random value leaks nothing a timing attacker could use.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ....errors import MilagroError
# One password policy for every role.
from ...passwords import authenticate_row, check_new_account, hash_password
from . import tables

#: Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "mtbs_"
MAX_LABEL = 128


class AccountError(MilagroError):
    """An admin or a token cannot be created (malformed name or label, empty password)."""


class AdminExists(AccountError):
    """An admin with that username exists."""


@dataclass(frozen=True)
class Admin:
    id: str
    username: str


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def add_admin(store, username: str, password: str, *, now: float | None = None) -> Admin:
    check_new_account(username, password, AccountError)
    admin = Admin(secrets.token_urlsafe(16), username)
    try:
        with store.begin() as connection:
            connection.execute(insert(tables.admins).values(
                id=admin.id, username=username, password_hash=hash_password(password), created_at=_now(now)))
    except IntegrityError:
        raise AdminExists(f"admin {username!r} already exists") from None
    return admin


def authenticate(store, username: str, password: str) -> Admin | None:
    """The admin if the password is right, else None (same time for an unknown name)."""
    row = authenticate_row(store, tables.admins, username, password)
    return None if row is None else Admin(row.id, row.username)


def get_admin(store, admin_id: str | None) -> Admin | None:
    if not admin_id:
        return None
    with store.read() as connection:
        row = connection.execute(select(tables.admins.c.id, tables.admins.c.username)
                                 .where(tables.admins.c.id == admin_id)).first()
    return Admin(row.id, row.username) if row else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store, admin: Admin, label: str, *, now: float | None = None) -> str:
    """A new bearer token for ``admin``; returned once, stored as its SHA256 only."""
    label = label.strip()
    if not label or len(label) > MAX_LABEL:
        raise AccountError(f"a token label is 1 to {MAX_LABEL} characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.begin() as connection:
        connection.execute(insert(tables.tokens).values(
            token_sha256=_digest(token), admin_id=admin.id, label=label, created_at=_now(now), revoked=False))
    return token


def token_admin(store, token: str) -> Admin | None:
    """The admin a presented bearer token belongs to, or None (unknown, revoked, malformed)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    with store.read() as connection:
        row = connection.execute(
            select(tables.admins.c.id, tables.admins.c.username)
            .join(tables.tokens, tables.tokens.c.admin_id == tables.admins.c.id)
            .where(tables.tokens.c.token_sha256 == _digest(token), tables.tokens.c.revoked.is_(False))).first()
    return Admin(row.id, row.username) if row else None


@dataclass(frozen=True)
class TokenInfo:
    digest_prefix: str          # the first 12 hex digits of the SHA256: names a token, reveals nothing
    label: str
    created_at: int
    revoked: bool


def list_tokens(store, admin: Admin) -> list[TokenInfo]:
    with store.read() as connection:
        rows = connection.execute(select(tables.tokens).where(tables.tokens.c.admin_id == admin.id)
                                  .order_by(tables.tokens.c.created_at, tables.tokens.c.token_sha256)).all()
    return [TokenInfo(row.token_sha256[:12], row.label, row.created_at, row.revoked) for row in rows]


def revoke_token(store, admin: Admin, digest_prefix: str) -> bool:
    """Revoke the admin's token whose SHA256 starts with ``digest_prefix`` (12 hex digits)."""
    if len(digest_prefix) != 12 or any(c not in "0123456789abcdef" for c in digest_prefix):
        return False
    with store.begin() as connection:
        result = connection.execute(
            update(tables.tokens).where(tables.tokens.c.admin_id == admin.id,
                                        tables.tokens.c.token_sha256.startswith(digest_prefix, autoescape=True),
                                        tables.tokens.c.revoked.is_(False))
            .values(revoked=True))
    return result.rowcount == 1


def add_admin_user(store, name: str, password: str) -> None:
    """``milagro tbs admin user add`` (the TBS's contract): refusals as the TBS's TbsError."""
    from ..groups import TbsError
    try:
        add_admin(store, name, password)
    except AdminExists as error:
        raise TbsError(409, "user_exists", str(error)) from None
    except AccountError as error:
        raise TbsError(400, "invalid_user", str(error)) from None


# --- login sessions ---------------------------------------------------------------------------
def open_session(store, admin: Admin, lifetime: int, *, now: float | None = None) -> str:
    """A new session id for ``admin`` (returned once; the store keeps its SHA256). Expired
    sessions are swept here, so the table stays as small as the logins in force."""
    session_id = secrets.token_urlsafe(32)
    at = _now(now)
    with store.begin() as connection:
        connection.execute(delete(tables.sessions).where(tables.sessions.c.expires_at <= at))
        connection.execute(insert(tables.sessions).values(id_sha256=_digest(session_id), admin_id=admin.id,
                                                          created_at=at, expires_at=at + lifetime))
    return session_id


def session_owner(store, session_id, *, now: float | None = None) -> Admin | None:
    """The admin of a live session, or None (unknown, ended, expired, malformed)."""
    if not isinstance(session_id, str) or not 16 <= len(session_id) <= 128:
        return None
    with store.read() as connection:
        row = connection.execute(
            select(tables.admins.c.id, tables.admins.c.username)
            .join(tables.sessions, tables.sessions.c.admin_id == tables.admins.c.id)
            .where(tables.sessions.c.id_sha256 == _digest(session_id),
                   tables.sessions.c.expires_at > _now(now))).first()
    return Admin(row.id, row.username) if row else None


def close_session(store, session_id) -> None:
    if isinstance(session_id, str):
        with store.begin() as connection:
            connection.execute(delete(tables.sessions).where(tables.sessions.c.id_sha256 == _digest(session_id)))


def close_all_sessions(store, admin: Admin) -> int:
    """End every login of ``admin`` (a stolen cookie stops working); how many were open."""
    with store.begin() as connection:
        return connection.execute(delete(tables.sessions).where(tables.sessions.c.admin_id == admin.id)).rowcount

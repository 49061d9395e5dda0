"""People who log in at the IdP: argon2id password hashes (argon2-cffi) in the store.

A failed login looks the same whether the name is unknown or the password wrong, and takes
the same time: an unknown name is checked against a dummy hash.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ...errors import MilagroError
from . import tables

#: argon2-cffi's defaults (RFC 9106's second recommended option: argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
#: Longest username accepted (the column's width); passwords are bounded by argon2 itself.
MAX_USERNAME = 128


class UserError(MilagroError):
    """A user cannot be added (duplicate or malformed name, empty password)."""


@dataclass(frozen=True)
class User:
    sub: str
    username: str
    #: When this person last proved their password (OIDC Core 2 ``auth_time``), if known here.
    auth_time: int | None = None

    def get_user_id(self) -> str:          # Authlib's user protocol
        return self.sub


def add_user(store, username: str, password: str, *, now: float | None = None) -> User:
    if not username or len(username) > MAX_USERNAME or any(c.isspace() or c in "@/" for c in username):
        raise UserError(f"a username is 1 to {MAX_USERNAME} characters without spaces, '@' or '/'")
    if not password:
        raise UserError("the password must not be empty")
    user = User(sub=secrets.token_urlsafe(16), username=username)
    try:
        with store.begin() as connection:
            connection.execute(insert(tables.users).values(
                sub=user.sub, username=username, password_hash=_hasher.hash(password),
                created_at=int(now if now is not None else time.time())))
    except IntegrityError:
        raise UserError(f"user {username!r} already exists") from None
    return user


def authenticate(store, username: str, password: str) -> User | None:
    """The user if the password is right, else None (same time for an unknown name)."""
    with store.read() as connection:
        row = connection.execute(select(tables.users).where(tables.users.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        with store.begin() as connection:
            connection.execute(update(tables.users).where(tables.users.c.sub == row.sub)
                               .values(password_hash=_hasher.hash(password)))
    return User(row.sub, row.username)


def get_user(store, sub: str | None) -> User | None:
    if not sub:
        return None
    with store.read() as connection:
        row = connection.execute(select(tables.users.c.sub, tables.users.c.username)
                                 .where(tables.users.c.sub == sub)).first()
    return User(row.sub, row.username) if row else None


def find_user(store, username: str) -> User | None:
    with store.read() as connection:
        row = connection.execute(select(tables.users.c.sub, tables.users.c.username)
                                 .where(tables.users.c.username == username)).first()
    return User(row.sub, row.username) if row else None

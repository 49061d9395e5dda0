"""People who log in at the IdP: argon2id password hashes in the store (roles.passwords: a
failed login takes the same time whether the name is unknown or the password wrong)."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ...errors import MilagroError
from ..passwords import authenticate_row, check_new_account, hash_password
from . import tables


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
    check_new_account(username, password, UserError)
    # Hex, not base64url: a sub may start with neither '-' (command lines read it as an option)
    # nor '_'; 128 random bits either way.
    user = User(sub=secrets.token_hex(16), username=username)
    try:
        with store.begin() as connection:
            connection.execute(insert(tables.users).values(
                sub=user.sub, username=username, password_hash=hash_password(password),
                created_at=int(now if now is not None else time.time())))
    except IntegrityError:
        raise UserError(f"user {username!r} already exists") from None
    return user


def authenticate(store, username: str, password: str) -> User | None:
    """The user if the password is right, else None (same time for an unknown name)."""
    row = authenticate_row(store, tables.users, username, password)
    return None if row is None else User(row.sub, row.username)


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

"""Passwords for every role that has people log in (IdP users, TBS admins): argon2id
(argon2-cffi's defaults, RFC 9106's second recommended option: 64 MiB, t=3, p=4).

A failed login looks the same whether the name is unknown or the password wrong, and takes the
same time: an unknown name is checked against a dummy hash. Hashes made with older parameters
are replaced on the next successful login.
"""
from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Table, select, update

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
#: Longest username accepted (the columns' width); passwords are bounded by argon2 itself.
MAX_USERNAME = 128


def check_new_account(username: str, password: str, error: type[Exception]) -> None:
    """Raise ``error`` for a name or password no role accepts."""
    if not username or len(username) > MAX_USERNAME or any(c.isspace() or c in "@/" for c in username):
        raise error(f"a username is 1 to {MAX_USERNAME} characters without spaces, '@' or '/'")
    if not password:
        raise error("the password must not be empty")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def authenticate_row(store, table: Table, username: str, password: str):
    """The row of ``table`` (columns ``username`` and ``password_hash``) whose password this
    is, else None, in the same time for an unknown name; rehashes outdated parameters."""
    with store.read() as connection:
        row = connection.execute(select(table).where(table.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        key = {column.name: getattr(row, column.name) for column in table.primary_key.columns}
        with store.begin() as connection:
            connection.execute(update(table).where(*(table.c[name] == value for name, value in key.items()))
                               .values(password_hash=_hasher.hash(password)))
    return row

"""Pending M-Pin authentications between pass 1 and pass 2, in the roles' store.

gunicorn's workers share nothing in memory, and pass 2 may land on another worker than pass 1,
so the pending state (public values: ID, date, U, y) lives in the store under the SHA256 of a
random session id. Pass 2 deletes the row in the same statement that reads it (DELETE ...
RETURNING): a session is used at most once, so a recorded V cannot be replayed, and a failed
attempt cannot be retried against the same challenge.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, insert
from sqlalchemy.engine import Connection

from ...mpin import PendingAuth

COMPONENT = "service"
#: Seconds between pass 1 and pass 2: a client answers at once; a minute covers a slow link.
SESSION_LIFETIME = 60

metadata = MetaData()

pending = Table(
    "service_mpin_pending", metadata,
    Column("session_sha256", String(64), primary_key=True),
    Column("pending", Text, nullable=False),             # PendingAuth.to_json()
    Column("expires_at", BigInteger, nullable=False),
)


def _v1_create_tables(connection: Connection) -> None:
    metadata.create_all(connection, checkfirst=False)


MIGRATIONS = (_v1_create_tables,)


def migrate(store) -> int:
    return store.migrate(COMPONENT, MIGRATIONS)


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


def save(store, state: PendingAuth, *, now: float | None = None) -> str:
    """Keep ``state``; returns the session id the client quotes in pass 2."""
    now = int(now if now is not None else time.time())
    session = secrets.token_urlsafe(32)
    with store.begin() as connection:
        # Expired sessions go here, on the write path, so no background job is needed.
        connection.execute(delete(pending).where(pending.c.expires_at < now))
        connection.execute(insert(pending).values(session_sha256=_digest(session),
                                                  pending=json.dumps(state.to_json()),
                                                  expires_at=now + SESSION_LIFETIME))
    return session


def take(store, session: str, *, now: float | None = None) -> PendingAuth | None:
    """The pending state for ``session``, removed; None if unknown, used or expired."""
    now = int(now if now is not None else time.time())
    with store.begin() as connection:
        row = connection.execute(delete(pending).where(pending.c.session_sha256 == _digest(session))
                                 .returning(pending.c.pending, pending.c.expires_at)).first()
    if row is None or row.expires_at < now:
        return None
    return PendingAuth.from_json(json.loads(row.pending))

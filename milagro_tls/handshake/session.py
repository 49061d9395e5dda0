"""Sessions for resumption by session ID (RFC 5246 §7.3, with RFC 7627 §5.3's EMS rules).

A resumed handshake skips the chain: the peer is the one verified when the session was made.
So a session lives at most ``lifetime`` seconds (one hour by default): after that, a reorg or
a revocation is seen again, because the next handshake verifies the staple afresh.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from ..ciphersuites.registry import SuiteSpec
from ..trust import AuthenticatedPeer

DEFAULT_SESSION_LIFETIME = 3600.0
#: Each entry is ~1 KB (the peer's certificate and locator); 20,000 bound the cache near 20 MB.
DEFAULT_MAX_SESSIONS = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """What resumption needs; like ``ssl.SSLSession``, an opaque value to the application."""
    id: bytes
    suite: SuiteSpec
    master_secret: bytes = field(repr=False)
    peer: AuthenticatedPeer | None
    #: The client's locator extension when the session was made: a resumption must claim the same.
    client_locator: bytes
    #: The server's own locator then: a server that has moved to another anchor resumes none of
    #: the old sessions (the client would refuse them).
    server_locator: bytes
    created: float

    @property
    def time(self) -> int:        # ssl.SSLSession names
        return int(self.created)

    @property
    def session_id(self) -> bytes:
        return self.id

    def expired(self, lifetime: float, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.created >= lifetime


class SessionCache:
    """The server's sessions by ID: bounded, least recently used out first, thread-safe."""

    def __init__(self, *, lifetime: float = DEFAULT_SESSION_LIFETIME, max_sessions: int = DEFAULT_MAX_SESSIONS):
        if lifetime <= 0:
            raise ValueError("session lifetime must be positive")
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._sessions: collections.OrderedDict[bytes, Session] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: Session) -> None:
        with self._lock:
            self._sessions[session.id] = session
            self._sessions.move_to_end(session.id)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    def get(self, session_id: bytes, now: float | None = None) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expired(self.lifetime, now):
                del self._sessions[session_id]
                return None
            self._sessions.move_to_end(session_id)
            return session

    def __len__(self) -> int:
        return len(self._sessions)

"""What a connection needs to know: who we are, whom we trust, and the header chain."""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..chain.verify import DEFAULT_MIN_CONFIRMATIONS, PeerIdentity, VerifiedHeaders
from ..ciphersuites.registry import DEFAULT_SUITES, SuiteSpec
from ..identity.local import LocalIdentity
from ..trust import TrustStore
from .messages import DEFAULT_MAX_STAPLE_SIZE
from .session import DEFAULT_SESSION_LIFETIME, SessionCache

if TYPE_CHECKING:
    from .peer import VerifiedStapleCache


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeConfig:
    headers: VerifiedHeaders             # staples verify against this and nothing else
    trust: TrustStore
    identity: LocalIdentity | None = None   # None: an anonymous client (server-only mode)
    suites: tuple[SuiteSpec, ...] = DEFAULT_SUITES   # in preference order
    min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS
    #: Blocks: refuse a peer's staple without a freshness bound or made longer ago (chain.proof).
    max_staple_age: int | None = None
    max_staple_size: int = DEFAULT_MAX_STAPLE_SIZE
    alpn_protocols: tuple[str, ...] = ()
    # server side
    require_client_identity: bool = False
    allowed_client_roles: frozenset[str] | None = None
    #: Loud opt-in: accept any peer whose anchor verifies, reported as unauthenticated.
    accept_any_anchored_peer_unauthenticated: bool = False
    #: Server only: any client whose anchor verifies may connect, unpinned ones with no name and
    #: authenticated=False; the application identifies them by their verified locator.
    accept_anchored_clients: bool = False
    #: Server: sessions it may resume. Client: how long it offers a session it holds.
    session_cache: SessionCache | None = None
    #: Staples verified before (by their bytes): repeat peers skip the SPV check, not the chain check.
    staple_cache: "VerifiedStapleCache | None" = None
    session_lifetime: float = DEFAULT_SESSION_LIFETIME
    #: Asked on every full handshake (never on a resumption: the session lifetime bounds that)
    #: once the peer's staple verified: raises chain.errors.AnchorRevoked for a revoked peer
    #: (chain.revocation.check_not_revoked bound to a source: the source's word, not SPV). A
    #: SourceError from it refuses the peer too (fail closed). None: revocation is not checked.
    revocation_check: "Callable[[PeerIdentity], object] | None" = None
    #: Server: Python ``ssl`` serves clients that offer none of our suites (standard suites,
    #: an X.509 certificate). Never used when client identities are required.
    fallback_context: ssl.SSLContext | None = None
    #: Client: also offer standard ECDHE suites, verified against these DER trust anchors
    #: (set only toward peers that are not pinned: the Context decides per connection).
    fallback_trust_anchors: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        if not self.suites:
            raise ValueError("no suites configured")
        if self.max_staple_age is not None and self.max_staple_age < 0:
            raise ValueError("max_staple_age must not be negative")
        if self.min_confirmations < 1:
            raise ValueError("min_confirmations must be at least 1: an unmined anchor proves nothing")

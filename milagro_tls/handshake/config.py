"""What a connection needs to know: who we are, whom we trust, and the header chain."""
from __future__ import annotations

from dataclasses import dataclass

from ..chain.verify import DEFAULT_MIN_CONFIRMATIONS, VerifiedHeaders
from ..ciphersuites.registry import DEFAULT_SUITES, SuiteSpec
from ..identity.local import LocalIdentity
from ..trust import TrustStore
from .messages import DEFAULT_MAX_STAPLE_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeConfig:
    headers: VerifiedHeaders             # staples verify against this and nothing else
    trust: TrustStore
    identity: LocalIdentity | None = None   # None: an anonymous client (server-only mode)
    suites: tuple[SuiteSpec, ...] = DEFAULT_SUITES   # in preference order
    min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS
    max_staple_size: int = DEFAULT_MAX_STAPLE_SIZE
    alpn_protocols: tuple[str, ...] = ()
    # server side
    require_client_identity: bool = False
    allowed_client_roles: frozenset[str] | None = None
    #: Loud opt-in: accept any peer whose anchor verifies, reported as unauthenticated.
    accept_any_anchored_peer_unauthenticated: bool = False

    def __post_init__(self) -> None:
        if not self.suites:
            raise ValueError("no suites configured")
        if self.min_confirmations < 1:
            raise ValueError("min_confirmations must be at least 1: an unmined anchor proves nothing")

"""Turn a peer's locator and staple into an AuthenticatedPeer, or the alert that refuses it.

Verification is the foundation's verifier against the local header chain (no network IO),
then the trust store: a verified anchor that is not pinned is still refused.
"""
from __future__ import annotations

import logging

from ..chain.errors import AnchorTooShallow, UnknownBlock, VerificationError
from ..chain.proof import AnchorProof
from ..chain.verify import verify_anchor
from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ..identity.locator import Locator
from ..trust import AuthenticatedPeer, TrustError, authenticate_peer
from .config import HandshakeConfig
from .errors import AnchorNotYetVerifiable, MalformedMessage, PeerNotAuthenticated
from .messages import Staple

log = logging.getLogger(__name__)


def parse_unverified_locator(raw: bytes) -> Locator:
    try:
        return Locator.decode(raw)
    except MalformedInput as exc:
        raise MalformedMessage(f"locator extension: {exc}") from None


def verify_peer(locator: Locator, staple: Staple, config: HandshakeConfig, *,
                expected_name: str | None = None,
                allowed_roles: frozenset[str] | None = None) -> AuthenticatedPeer:
    try:
        certificate = BirthCertificate.parse(staple.certificate)
        proof = AnchorProof.decode(staple.proof, max_size=config.max_staple_size)
    except MalformedInput as exc:
        raise MalformedMessage(f"staple: {exc}") from None
    try:
        identity = verify_anchor(locator, certificate, proof, config.headers,
                                 min_confirmations=config.min_confirmations)
    except (UnknownBlock, AnchorTooShallow) as exc:
        raise AnchorNotYetVerifiable(f"anchor {locator.txid_hex}: {exc}", block_hash=locator.block_hash) from None
    except VerificationError as exc:
        raise PeerNotAuthenticated(f"anchor {locator.txid_hex}: {type(exc).__name__}: {exc}") from None
    try:
        return authenticate_peer(
            identity, config.trust, expected_name=expected_name, allowed_roles=allowed_roles,
            accept_any_anchored_peer_unauthenticated=config.accept_any_anchored_peer_unauthenticated)
    except TrustError as exc:
        raise PeerNotAuthenticated(f"anchor {locator.txid_hex} ({certificate.name!r}): {exc}") from None


def reauthenticate(peer: AuthenticatedPeer | None, config: HandshakeConfig, *, expected_name: str | None = None,
                   allowed_roles: frozenset[str] | None = None) -> AuthenticatedPeer | None:
    """A resumed session's peer, checked against today's trust store (a pin may be gone, or
    the session may be offered for another name) without touching the chain."""
    if peer is None:
        return None
    try:
        return authenticate_peer(
            peer.identity, config.trust, expected_name=expected_name, allowed_roles=allowed_roles,
            accept_any_anchored_peer_unauthenticated=config.accept_any_anchored_peer_unauthenticated)
    except TrustError as exc:
        raise PeerNotAuthenticated(f"resumed session's peer {peer.identity.locator.txid_hex}: {exc}") from None

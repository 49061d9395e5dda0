"""Turn a peer's locator and staple into an AuthenticatedPeer, or the alert that refuses it.

Verification is the foundation's verifier against the local header chain (no network IO),
then the trust store: a verified anchor that is not pinned is still refused.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import threading

from ..chain.errors import AnchorRevoked, AnchorTooShallow, SourceError, UnknownBlock, VerificationError
from ..chain.proof import AnchorProof
from ..chain.verify import PeerIdentity, recheck_verified, verify_anchor
from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ..identity.locator import Locator
from ..trust import AuthenticatedPeer, TrustError, authenticate_peer
from .config import HandshakeConfig
from .errors import AnchorNotYetVerifiable, MalformedMessage, PeerNotAuthenticated, PeerRevoked
from .messages import Staple

log = logging.getLogger(__name__)


def parse_unverified_locator(raw: bytes) -> Locator:
    try:
        return Locator.decode(raw)
    except MalformedInput as exc:
        raise MalformedMessage(f"locator extension: {exc}") from None


class VerifiedStapleCache:
    """Identities verified from staples, by the staple's exact bytes (the locator, certificate
    and proof). A hit skips parsing and SPV, but the block's place on today's best chain and the
    depth are checked again (chain.verify.recheck_verified), so a reorg is still seen."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[bytes, PeerIdentity] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(locator: Locator, staple: Staple) -> bytes:
        digest = hashlib.sha256(locator.encode())
        for part in (staple.certificate, staple.proof):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        return digest.digest()

    def get(self, key: bytes) -> PeerIdentity | None:
        with self._lock:
            identity = self._entries.get(key)
            if identity is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return identity

    def put(self, key: bytes, identity: PeerIdentity) -> None:
        with self._lock:
            self._entries[key] = identity
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)


def verify_peer(locator: Locator, staple: Staple, config: HandshakeConfig, *,
                expected_name: str | None = None,
                allowed_roles: frozenset[str] | None = None, client: bool = False) -> AuthenticatedPeer:
    """``client``: the peer is our client (we are the server), so the server-only
    ``accept_anchored_clients`` applies; it never applies to a server we connect to."""
    identity = _verified_identity(locator, staple, config)
    try:
        return authenticate_peer(
            identity, config.trust, expected_name=expected_name, allowed_roles=allowed_roles,
            accept_any_anchored_peer_unauthenticated=config.accept_any_anchored_peer_unauthenticated,
            accept_unpinned_client=client and config.accept_anchored_clients)
    except TrustError as exc:
        raise PeerNotAuthenticated(f"anchor {locator.txid_hex} ({identity.certificate.name!r}): {exc}") from None


def _verified_identity(locator: Locator, staple: Staple, config: HandshakeConfig) -> PeerIdentity:
    cache = config.staple_cache
    key = cache.key(locator, staple) if cache is not None else b""
    cached = cache.get(key) if cache is not None else None
    try:
        if cached is not None:
            identity = recheck_verified(cached, config.headers, min_confirmations=config.min_confirmations,
                                        max_staple_age=config.max_staple_age)
            _check_revocation(identity, config)
            return identity
        try:
            certificate = BirthCertificate.parse(staple.certificate)
            proof = AnchorProof.decode(staple.proof, max_size=config.max_staple_size)
        except MalformedInput as exc:
            raise MalformedMessage(f"staple: {exc}") from None
        identity = verify_anchor(locator, certificate, proof, config.headers,
                                 min_confirmations=config.min_confirmations, max_staple_age=config.max_staple_age)
    except (UnknownBlock, AnchorTooShallow) as exc:
        raise AnchorNotYetVerifiable(f"anchor {locator.txid_hex}: {exc}", block_hash=locator.block_hash) from None
    except VerificationError as exc:
        if cache is not None:
            cache.drop(key)
        raise PeerNotAuthenticated(f"anchor {locator.txid_hex}: {type(exc).__name__}: {exc}") from None
    if cache is not None:
        cache.put(key, identity)
    _check_revocation(identity, config)
    return identity


def _check_revocation(identity: PeerIdentity, config: HandshakeConfig) -> None:
    """Every full handshake, staple cache hit or not: a seal can be spent at any time."""
    if config.revocation_check is None:
        return
    try:
        config.revocation_check(identity)
    except AnchorRevoked as exc:
        raise PeerRevoked(f"anchor {identity.locator.txid_hex}: {exc}") from None
    except SourceError as exc:
        # Fail closed: a verifier configured to check revocation does not accept a peer
        # whose status it could not learn.
        raise PeerNotAuthenticated(f"anchor {identity.locator.txid_hex}: revocation status unknown, "
                                   f"the chain source failed: {type(exc).__name__}: {exc}") from None
    except VerificationError as exc:
        # A checker whose evidence does not check out (a stale revocation list, a bad link):
        # the status is unknown, and it is the same refusal.
        raise PeerNotAuthenticated(f"anchor {identity.locator.txid_hex}: revocation status unknown: "
                                   f"{type(exc).__name__}: {exc}") from None


def reauthenticate(peer: AuthenticatedPeer | None, config: HandshakeConfig, *, expected_name: str | None = None,
                   allowed_roles: frozenset[str] | None = None, client: bool = False) -> AuthenticatedPeer | None:
    """A resumed session's peer, checked against today's trust store (a pin may be gone, or
    the session may be offered for another name) without touching the chain."""
    if peer is None:
        return None
    try:
        return authenticate_peer(
            peer.identity, config.trust, expected_name=expected_name, allowed_roles=allowed_roles,
            accept_any_anchored_peer_unauthenticated=config.accept_any_anchored_peer_unauthenticated,
            accept_unpinned_client=client and config.accept_anchored_clients)
    except TrustError as exc:
        raise PeerNotAuthenticated(f"resumed session's peer {peer.identity.locator.txid_hex}: {exc}") from None

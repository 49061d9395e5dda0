"""Revoking batch-anchored PATs: a TBS's revocation lists on its type-0x04 anchor chain.

A PAT in a taproot batch holds no coin of its own, so it has no seal to spend. Its TBS keeps a
sorted list of the SHA256 digests of the certificates it revoked, and anchors the list's Merkle
root (milagro_tls.merkle, sorted leaves) as the next link of its REVOCATION_LIST_ROOT chain
(identity.rootchain.RootAnchorer; the TBS's birth certificate names that chain). The current
list is the latest link, the one whose chain output is unspent.

To show a PAT is not revoked, whoever holds the list (the TBS, or the PAT relaying it) gives a
non-membership proof of the PAT's certificate digest against a root; the verifier checks the
proof (hashes only) and that the root is the **current** link of the TBS's chain
(chain.rootchain.follow_root_chain: every link proven by SPV, and "no later link exists" is the
chain source's word). So:

* a proof against an older list (before the PAT was revoked) is refused as stale once the
  verifier's source shows a newer link; a source that hides newer links can make it pass;
* a verifier without a source (or without the TBS's birth anchor) cannot check this at all.
"""
from __future__ import annotations

from typing import Iterable

from ..identity.marker import MarkerType
from ..merkle import EMPTY_ROOT, MerkleProofError, NonMembershipProof, merkle_root, non_membership_proof, \
    verify_non_membership
from .errors import AnchorRevoked, RootChainError
from .rootchain import RootChainView

REVOCATION_LIST = MarkerType.REVOCATION_LIST_ROOT


class RevocationListStale(RootChainError):
    """The proof is against a list root that is not the TBS's current one."""


def sorted_revocation_list(digests: Iterable[bytes]) -> tuple[bytes, ...]:
    """Certificate digests as the list's leaves: 32 bytes each, unique, ascending."""
    leaves = set()
    for digest in digests:
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError("a revoked certificate digest is 32 bytes")
        leaves.add(digest)
    return tuple(sorted(leaves))


def revocation_list_root(digests: Iterable[bytes]) -> bytes:
    """The Merkle root the TBS anchors for this list (the empty root for no revocations)."""
    return merkle_root(sorted_revocation_list(digests))


def prove_not_revoked(digests: Iterable[bytes], certificate_digest: bytes) -> NonMembershipProof:
    """The TBS's side: AnchorRevoked if the list names ``certificate_digest``."""
    leaves = sorted_revocation_list(digests)
    if certificate_digest in leaves:
        raise AnchorRevoked(f"certificate {certificate_digest.hex()} is on the revocation list")
    return non_membership_proof(leaves, certificate_digest)


def check_not_revoked_in_list(certificate_digest: bytes, proof: NonMembershipProof, root: bytes,
                              view: RootChainView) -> None:
    """The verifier's side, given the TBS's REVOCATION_LIST chain as ``follow_root_chain``
    verified it. Raises RevocationListStale when ``root`` is not its current link (a chain with
    no link yet has revoked nobody: ``root`` must then be the empty root), AnchorRevoked when
    the proof does not show the digest absent from that list."""
    if view.root_type != REVOCATION_LIST:
        raise ValueError("the view is not of a REVOCATION_LIST_ROOT chain")
    current = view.current
    expected = current.root if current is not None else EMPTY_ROOT
    if root != expected:
        where = f"link {current.number} ({current.txid_hex})" if current is not None else "no list anchored yet"
        raise RevocationListStale(f"list root {root.hex()} is not the TBS's current revocation list ({where}; "
                                  "the chain source's word that no later link exists)")
    try:
        verify_non_membership(certificate_digest, proof, root)
    except MerkleProofError as exc:
        raise AnchorRevoked(f"certificate {certificate_digest.hex()} is not shown absent from the TBS's "
                            f"current revocation list: {exc}") from None

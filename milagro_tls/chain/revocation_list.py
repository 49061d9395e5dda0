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

**Which list is current.** The newest link of the chain the verifier's source admits to,
**pending (mempool) link included**: ``view.pending_root`` when there is one, else the latest
confirmed root, else the empty root. As with a seal spend (chain.revocation), a revocation
counts once the TBS broadcasts its list, not blocks later; a proof against any older list is
RevocationListStale.

**Asking the TBS** (``GET /chain/revocation/<certificate digest>``, chain.tbs_endpoints): it
answers a ``RevocationAnswer``. ``{"revoked": true}`` is the TBS's word and is believed at once
(a revocation it has recorded but not anchored yet counts too): a lying TBS can only deny
service to its own PATs. Otherwise it sends a non-membership proof against the newest list it
has anchored (sent), which the verifier checks against the chain as above (``TbsRevocations``,
the Context's ``batch_revocation`` checker).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ..identity.locator import Locator
from ..identity.marker import MarkerType
from ..merkle import EMPTY_ROOT, MAX_PATH, MerkleProofError, NonMembershipProof, merkle_root, \
    non_membership_proof, verify_non_membership
from .errors import AnchorRevoked, NoRootChain, RootChainError, SourceError
from .hashes import from_display_hex, to_display_hex
from .rootchain import RootChainView, follow_root_chain
from .source import ChainSource
from .verify import PeerIdentity, VerifiedHeaders, resolve_anchor

log = logging.getLogger(__name__)

REVOCATION_LIST = MarkerType.REVOCATION_LIST_ROOT


class RevocationListStale(RootChainError):
    """The proof is against a list root that is not the TBS's current one."""


class RevocationUnknown(SourceError):
    """A batch PAT's status could not be learnt: the TBS's answer did not check out against its
    0x04 chain (a stale list, a link that does not verify). A SourceError, so that a handshake
    refuses the peer as it does when the chain source cannot answer (fail closed), with
    bad_certificate rather than certificate_revoked; the precise error is its ``__cause__``."""


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
    verified it. Raises RevocationListStale when ``root`` is not the chain's **newest** link
    (the pending one when the source shows one in its mempool, else the latest confirmed; a
    chain with no link yet has revoked nobody: ``root`` must then be the empty root),
    AnchorRevoked when the proof does not show the digest absent from that list."""
    if view.root_type != REVOCATION_LIST:
        raise ValueError("the view is not of a REVOCATION_LIST_ROOT chain")
    current = view.current          # RootChainError if the walk did not reach the chain's end
    if view.pending_root is not None:
        expected = view.pending_root
        where = f"pending link {len(view.links) + 1} ({to_display_hex(view.pending_txid)}, not confirmed yet)"
    elif current is not None:
        expected, where = current.root, f"link {current.number} ({current.txid_hex})"
    else:
        expected, where = EMPTY_ROOT, "no list anchored yet"
    if root != expected:
        raise RevocationListStale(f"list root {root.hex()} is not the TBS's current revocation list ({where}; "
                                  "the chain source's word that no later link exists)")
    try:
        verify_non_membership(certificate_digest, proof, root)
    except MerkleProofError as exc:
        raise AnchorRevoked(f"certificate {certificate_digest.hex()} is not shown absent from the TBS's "
                            f"current revocation list: {exc}") from None


# --- the TBS's answer ---------------------------------------------------------------------------

#: A TBS's answer is small: two neighbours, each with a path of at most MAX_PATH hashes.
MAX_ANSWER_JSON = 16 * 1024
_LINK_NUMBER_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class RevocationAnswer:
    """What a TBS says about one certificate digest (``GET /chain/revocation/<digest>``).

    ``revoked`` True: the TBS's word, every other field None. Otherwise ``root`` is the list
    the non-membership ``proof`` is against, and ``link_txid`` (wire order) / ``link_number``
    the link of the TBS's 0x04 chain that anchored it (both None for the empty list before
    any link). The link is informative: the verifier decides from the root and its own walk
    of the chain (``check_not_revoked_in_list``)."""
    revoked: bool
    root: bytes | None = None
    proof: NonMembershipProof | None = None
    link_txid: bytes | None = None
    link_number: int | None = None

    def __post_init__(self) -> None:
        if type(self.revoked) is not bool:
            raise MalformedInput("revoked must be a boolean")
        if self.revoked:
            if (self.root, self.proof, self.link_txid, self.link_number) != (None, None, None, None):
                raise MalformedInput("a revoked answer carries nothing but revoked: true")
            return
        if not isinstance(self.root, bytes) or len(self.root) != 32:
            raise MalformedInput("an unrevoked answer names its list root (32 bytes)")
        if not isinstance(self.proof, NonMembershipProof):
            raise MalformedInput("an unrevoked answer carries a non-membership proof")
        for neighbour in (self.proof.left, self.proof.right):
            if neighbour is not None and len(neighbour.leaf) != 32:
                raise MalformedInput("a revocation list's leaves are 32-byte certificate digests")
        if (self.link_txid is None) != (self.link_number is None):
            raise MalformedInput("link txid and number come together")
        if self.link_txid is None:
            if self.root != EMPTY_ROOT:
                raise MalformedInput("only the empty list has no link")
        else:
            if not isinstance(self.link_txid, bytes) or len(self.link_txid) != 32:
                raise MalformedInput("link txid must be 32 bytes")
            if type(self.link_number) is not int or not 1 <= self.link_number <= _LINK_NUMBER_MAX:
                raise MalformedInput(f"link number must be in [1, {_LINK_NUMBER_MAX}]")

    def to_json(self) -> dict[str, Any]:
        if self.revoked:
            return {"revoked": True}
        link = None if self.link_txid is None else {"txid": to_display_hex(self.link_txid),
                                                    "number": self.link_number}
        return {"revoked": False, "root": self.root.hex(), "link": link, "proof": self.proof.to_json()}

    @classmethod
    def from_json(cls, doc: Any) -> "RevocationAnswer":
        """Strict: exactly the fields of one of the two shapes; MalformedInput otherwise."""
        if not isinstance(doc, dict) or type(doc.get("revoked")) is not bool:
            raise MalformedInput("a revocation answer is a JSON object with a boolean 'revoked'")
        if doc["revoked"]:
            if set(doc) != {"revoked"}:
                raise MalformedInput("a revoked answer carries nothing but revoked: true")
            return cls(True)
        if set(doc) != {"revoked", "root", "link", "proof"}:
            raise MalformedInput(f"an unrevoked answer has exactly revoked, root, link and proof, not {sorted(doc)}")
        root = _hex32(doc["root"], "root")
        link = doc["link"]
        txid = number = None
        if link is not None:
            if not isinstance(link, dict) or set(link) != {"txid", "number"}:
                raise MalformedInput("link is null or {txid, number}")
            if not isinstance(link["txid"], str) or len(link["txid"]) != 64:
                raise MalformedInput("link txid must be 64 hex digits")
            try:
                txid = from_display_hex(link["txid"])
            except ValueError:
                raise MalformedInput("link txid must be 64 hex digits") from None
            number = link["number"]
        _bounded_proof(doc["proof"])
        try:
            proof = NonMembershipProof.from_json(doc["proof"])
        except (MerkleProofError, TypeError) as exc:
            raise MalformedInput(f"proof: {exc}") from None
        return cls(False, root, proof, txid, number)


def _hex32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64 or value != value.lower():
        raise MalformedInput(f"{what} must be 64 lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedInput(f"{what} must be 64 lowercase hex digits") from None


def _bounded_proof(doc: Any) -> None:
    """Refuse oversized paths before parsing them (a neighbour's path is at most MAX_PATH)."""
    if not isinstance(doc, dict):
        raise MalformedInput("proof must be a JSON object")
    for side in ("left", "right"):
        neighbour = doc.get(side)
        if isinstance(neighbour, dict) and isinstance(neighbour.get("proof"), dict):
            for value in neighbour["proof"].values():
                if isinstance(value, list) and len(value) > MAX_PATH:
                    raise MalformedInput(f"proof: the {side} neighbour's path exceeds {MAX_PATH} hashes")


def answer_for(digests_anchored: Iterable[bytes], digests_revoked: Iterable[bytes] | set[bytes],
               digest: bytes, link: "tuple[bytes, int] | None") -> RevocationAnswer:
    """The TBS's answer for ``digest`` (pure). ``digests_revoked``: every digest in its store,
    anchored or not yet; ``digests_anchored``: the newest list it has anchored (sent), whose
    link is ``link`` = (txid wire order, link number), None while no list is anchored (the
    list must then be empty). Revoked if the store names the digest, else a non-membership
    proof against the anchored list."""
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ValueError("a certificate digest is 32 bytes")
    leaves = sorted_revocation_list(digests_anchored)
    revoked = digests_revoked if isinstance(digests_revoked, (set, frozenset)) else set(digests_revoked)
    if digest in revoked or digest in leaves:
        return RevocationAnswer(True)
    if link is None:
        if leaves:
            raise ValueError("an anchored list of revocations has a link")
        return RevocationAnswer(False, EMPTY_ROOT, non_membership_proof(leaves, digest))
    txid, number = link
    return RevocationAnswer(False, merkle_root(leaves), non_membership_proof(leaves, digest), txid, number)


# --- the verifier's checker ---------------------------------------------------------------------

class RevocationStatus(Protocol):
    """Who answers for a TBS: chain.tbs_source.TbsSource, or the TBS's own store in tests."""

    def revocation_status(self, digest: bytes) -> RevocationAnswer: ...


#: Walks per check before giving up on reaching the chain's end (each walk is bounded).
_MAX_WALKS = 20


class TbsRevocations:
    """A chain.revocation BatchChecker for the PATs of one TBS (certificates naming its
    batching key): asks the TBS (``status.revocation_status``) and checks an unrevoked answer
    against the TBS's 0x04 chain as the verifier's ``source`` shows it (newest link, pending
    included: ``check_not_revoked_in_list``). The walk continues from the last view (kept
    under a lock: handshakes check from several threads).

    ``tbs`` is the TBS's verified identity and ``birth_tx`` its anchor transaction
    (``resolve_anchor``; ``from_tbs`` does both from its locator)."""

    def __init__(self, tbs: PeerIdentity, birth_tx: bytes, status: RevocationStatus, source: ChainSource,
                 headers: VerifiedHeaders, *, min_confirmations: int = 1) -> None:
        if tbs.certificate.batch_key is None:
            raise ValueError(f"{tbs.name} names no batching key: it anchors no PATs")
        if tbs.certificate.root_chain(REVOCATION_LIST) is None:
            raise NoRootChain(f"{tbs.name}'s birth certificate names no REVOCATION_LIST_ROOT chain")
        self.tbs, self.birth_tx, self.status = tbs, birth_tx, status
        self.source, self.headers, self.min_confirmations = source, headers, min_confirmations
        self._view: RootChainView | None = None
        self._lock = threading.Lock()
        self._owned = None

    @classmethod
    def from_tbs(cls, tbs: "str | RevocationStatus", locator: Locator, source: ChainSource,
                 headers: VerifiedHeaders, **options) -> "TbsRevocations":
        """Resolve the TBS from its locator: its birth certificate from the TBS itself
        (``/.well-known/milagro/birth-certificate``, bounded), verified by SPV against the anchor
        (``resolve_anchor``: a TBS cannot pass off another certificate). ``tbs`` is a TbsSource
        or its base URL (``https://HOST:PORT``, or ``tbs://HOST:PORT``); a source made here is
        closed by ``close()``."""
        from .tbs_source import TbsSource
        owned = None
        if isinstance(tbs, str):
            url = "https://" + tbs[len("tbs://"):] if tbs.startswith("tbs://") else tbs
            tbs = owned = TbsSource(url, network=source.network)
        try:
            raw = tbs.birth_certificate()
            try:
                certificate = BirthCertificate.parse(raw)
            except MalformedInput as exc:
                raise RootChainError(f"the TBS's birth certificate does not parse: {exc}") from None
            identity, proof = resolve_anchor(locator, certificate, source, headers)
            checker = cls(identity, proof.tx, tbs, source, headers, **options)
        except BaseException:
            if owned is not None:
                owned.close()
            raise
        checker._owned = owned
        return checker

    @property
    def batch_key(self) -> bytes:
        return self.tbs.certificate.batch_key

    def covers(self, identity: PeerIdentity) -> bool:
        """Whether ``identity`` is a batch-anchored PAT of this TBS (its certificate names the
        TBS's batching key)."""
        return identity.seal is None and identity.certificate.batch_key == self.batch_key

    def view(self) -> RootChainView:
        """The TBS's 0x04 chain as the source shows it now (continued from the last walk)."""
        with self._lock:
            view = self._view
            for _ in range(_MAX_WALKS):
                view = follow_root_chain(self.tbs, self.birth_tx, REVOCATION_LIST, self.source, self.headers,
                                         min_confirmations=self.min_confirmations, previous=view)
                if view.complete:
                    break
            self._view = view
            return view

    def __call__(self, identity: PeerIdentity) -> None:
        if not self.covers(identity):
            raise ValueError(f"{identity.name!r} is not a batch-anchored PAT of {self.tbs.name} "
                             "(see covers())")
        digest = identity.certificate.digest()
        answer = self.status.revocation_status(digest)
        if answer.revoked:
            log.info("batch PAT %r revoked: its TBS %r says so", identity.name, self.tbs.name)
            raise AnchorRevoked(f"{identity.name!r} is revoked: its TBS {self.tbs.name} says so "
                                "(the TBS's word)")
        check_not_revoked_in_list(digest, answer.proof, answer.root, self.view())

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

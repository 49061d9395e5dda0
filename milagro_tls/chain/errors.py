"""Errors of the chain layer.

    ChainError
     ├── SourceError                 a chain source failed (network, protocol, refusal)
     │    ├── TxNotFound             the source does not know the transaction
     │    ├── BlockNotFound          the source does not know the block or height
     │    ├── SourceUnavailable      the source could not be reached or did not answer
     │    └── SourceBehind           the source's chain is behind ours or has less work
     ├── NodeError                   the embedded regtest node
     │    ├── DataDirLocked          another process owns the chain directory
     │    ├── TxRejected             mempool refused a transaction (reason in .reason)
     │    └── BlockRejected          the kernel did not make the block the tip
     ├── HeaderRejected              a header broke a rule (rule in .rule)
     └── VerificationError           an anchor does not prove the identity
          ├── AnchorNotFound
          ├── AnchorUnconfirmed
          ├── AnchorTooShallow
          ├── UnknownBlock           proof names a block our header chain does not have
          ├── ProofMismatch          merkle branch, witness commitment or header mismatch
          ├── DigestMismatch
          ├── BadSignature
          ├── WrongKey
          ├── MalformedAnchor
          ├── UnknownMarkerType
          ├── AnchorRevoked          the seal is spent, or the TBS's current list names the PAT
          │                          (the source's word: chain.revocation)
          ├── StapleTooOld           the staple's freshness bound is missing or too far behind
          └── RootChainError         a root-chain link does not prove the root (chain.rootchain)
               ├── RootNotInChain    the root is not in the party's verified chain
               └── NoRootChain       the certificate names no chain of that type
"""
from __future__ import annotations

from ..errors import MilagroError


class ChainError(MilagroError):
    """Anything that goes wrong with chain data."""


class SourceError(ChainError):
    """A chain source failed to answer."""


class TxNotFound(SourceError):
    def __init__(self, txid: str, detail: str = "") -> None:
        self.txid = txid
        super().__init__(f"transaction {txid} not found" + (f": {detail}" if detail else ""))


class BlockNotFound(SourceError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"block {what} not found")


class SourceBehind(SourceError):
    """The source's tip is not on our best header chain, or is below its tip.

    Such a source is not used for proofs: it may be hiding blocks (a reorg, a revocation).
    """


class SourceUnavailable(SourceError):
    """The server could not be reached or did not answer. ``maybe_sent``: the request may
    have reached it (so only an idempotent request may be repeated)."""

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class NodeError(ChainError):
    """The embedded regtest node refused an operation."""


class DataDirLocked(NodeError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"chain directory {path} is owned by another process")


class TxRejected(NodeError):
    def __init__(self, reason: str, txid: str | None = None) -> None:
        self.reason = reason
        self.txid = txid
        super().__init__(f"transaction rejected: {reason}")


class BlockRejected(NodeError):
    def __init__(self, reason: str, block_hash: str | None = None) -> None:
        self.reason = reason
        self.block_hash = block_hash
        super().__init__(f"block rejected: {reason}")


class HeaderRejected(ChainError):
    def __init__(self, rule: str, block_hash: str | None = None, height: int | None = None) -> None:
        self.rule = rule
        self.block_hash = block_hash
        self.height = height
        where = f" at height {height}" if height is not None else ""
        super().__init__(f"header {block_hash or '?'}{where} rejected: {rule}")


class VerificationError(ChainError):
    """The anchor does not prove the claimed identity. ``str(e)`` is the reason."""


class AnchorNotFound(VerificationError):
    pass


class AnchorUnconfirmed(VerificationError):
    pass


class AnchorTooShallow(VerificationError):
    def __init__(self, confirmations: int, required: int) -> None:
        self.confirmations = confirmations
        self.required = required
        super().__init__(f"anchor has {confirmations} confirmations, {required} required")


class UnknownBlock(VerificationError):
    pass


class ProofMismatch(VerificationError):
    pass


class DigestMismatch(VerificationError):
    pass


class BadSignature(VerificationError):
    pass


class WrongKey(VerificationError):
    pass


class MalformedAnchor(VerificationError):
    pass


class UnknownMarkerType(VerificationError):
    pass


class RootChainError(VerificationError):
    """A link of a party's anchor chain does not verify, or the walk cannot answer."""


class RootNotInChain(RootChainError):
    """The root is not in any verified, confirmed link of the chain (a stranger's anchor of
    the same root, a pending link, or a root never anchored)."""


class NoRootChain(RootChainError):
    """The birth certificate names no anchor chain of the asked type."""


class AnchorRevoked(VerificationError):
    """The identity is revoked: its seal is spent, or its TBS's current revocation list names it.
    Spent/unspent and "current" are the chain source's word, not proven by headers."""


class StapleTooOld(VerificationError):
    """The staple carries no freshness bound, or one too far behind our tip (chain.proof)."""

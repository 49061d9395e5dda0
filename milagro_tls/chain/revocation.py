"""Is a verified identity revoked? The source's word, not SPV.

A single-anchored party is revoked by spending its **seal** (``PeerIdentity.seal``: the anchor's
output paying the identity key; ``milagro identity revoke`` builds that spend). Whether an output
is spent is something block headers cannot show: a verifier asks its chain source
(``ChainSource.outspend_unverified``: bitcoind's ``gettxout``, Esplora's ``/outspend``), and
believes it. What that means:

* **A lying or stale source can hide a revocation** (say "unspent" for a spent seal). It cannot
  forge one that matters to an honest party: a spend that does not exist only makes the verifier
  refuse a peer it would otherwise accept (a denial of service the source could cause anyway by
  not answering).
* A spend counts as soon as the source has seen it, **mempool included**: revocation takes
  effect when the owner broadcasts, not six blocks later. A revocation that a reorg or a
  mempool eviction undoes is undone here too (the source no longer names a spender).
* A verifier **without a source** (a thin client verifying staples against headers someone
  else keeps current) cannot learn of a revocation at all; the staple's freshness bound
  (chain.proof, ``max_staple_age``) only bounds how long ago the stapler itself last saw its
  seal unspent, by its own source's word.

Batch-anchored PATs have no seal (``seal is None``): their TBS revokes them on its type-0x04
revocation-list chain (chain.revocation_list); ``check_not_revoked`` hands them to the
``batch`` checker when one is given and otherwise reports them as not checkable. The checker
for one TBS is chain.revocation_list.TbsRevocations (the Context's ``batch_revocation``): it
asks the TBS, believes "revoked" (the TBS's word: it can only deny its own PATs), and otherwise
checks the TBS's non-membership proof against the **newest** link of its 0x04 chain that the
verifier's source admits to, pending (mempool) link included, as a seal spend counts once
broadcast. A proof against an older list is refused (RevocationListStale); a TBS that does not
answer leaves the PAT unchecked, which the handshake refuses (fail closed) like a silent source.
"""
from __future__ import annotations

import logging
from typing import Callable

from .errors import AnchorRevoked
from .hashes import to_display_hex
from .source import ChainSource
from .verify import PeerIdentity

log = logging.getLogger(__name__)

#: A checker for batch-anchored PATs (no seal): raise AnchorRevoked, or return.
BatchChecker = Callable[[PeerIdentity], None]


def seal_spender(identity: PeerIdentity, source: ChainSource) -> bytes | None:
    """The txid (wire order) spending ``identity``'s seal, or None while it is unspent:
    **the source's word** (mempool included). ValueError for an identity without a seal."""
    if identity.seal is None:
        raise ValueError(f"{identity.name} is batch-anchored: it has no seal (see chain.revocation_list)")
    txid, vout = identity.seal
    return source.outspend_unverified(txid, vout)


def check_not_revoked(identity: PeerIdentity, source: ChainSource, *,
                      batch: BatchChecker | None = None) -> bool:
    """Raise AnchorRevoked if the source says ``identity`` is revoked. Returns True when the
    status was checked, False for a batch-anchored PAT that no ``batch`` checker covers.

    SourceError propagates: a caller that cannot ask decides whether to refuse (the handshake
    does: fail closed) or go on."""
    if identity.seal is None:
        if batch is None:
            return False
        batch(identity)
        return True
    spender = seal_spender(identity, source)
    if spender is not None:
        txid, vout = identity.seal
        log.info("identity %r revoked: seal %s:%d spent by %s (the source's word)", identity.name,
                 to_display_hex(txid), vout, to_display_hex(spender))
        raise AnchorRevoked(f"{identity.name!r} is revoked: its seal {to_display_hex(txid)}:{vout} is spent "
                            f"by {to_display_hex(spender)} (the chain source's word, not SPV)")
    return True
